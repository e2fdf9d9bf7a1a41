"""hlp: audio-visual video highlight detection with HPCL."""
