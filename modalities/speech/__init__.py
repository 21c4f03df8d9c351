"""Speech: speech-token TTS with VADUSA draft heads (data builder so far)."""
