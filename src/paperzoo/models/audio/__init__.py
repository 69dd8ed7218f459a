"""Speech models that learn from raw audio: wav2vec 2.0, one file per paper."""
