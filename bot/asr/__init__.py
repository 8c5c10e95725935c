"""Speech recognition engines behind one interface (`bot.asr.engine.Engine`)."""
