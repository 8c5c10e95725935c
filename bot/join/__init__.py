"""`captionbot join URL`: the bot joins a meeting in headless Chromium as a caption participant."""
