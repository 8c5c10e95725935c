"""`captionbot serve`: many meeting sessions on one engine, on one box or on Ray Serve."""
