//! Public profiles (issue 4).
