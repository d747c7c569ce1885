//! Image input (filled in by the image work).
