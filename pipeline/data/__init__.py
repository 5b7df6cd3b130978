"""Data: corpus readers, audit, speaker-independent splits, audio decoding, `ser prepare` and the
demo-corpus synthesizer."""
