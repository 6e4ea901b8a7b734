//! Synthetic data (being written).
