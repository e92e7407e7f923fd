//! Vigil data sets: synthetic enterprise generator and adapters for public lateral-movement formats.
