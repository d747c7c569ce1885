//! Audio input (filled in by the audio work).
