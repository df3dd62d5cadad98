//! Hot reload of the standalone configuration file.
