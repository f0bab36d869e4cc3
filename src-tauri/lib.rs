//! Desktop shell (stub).
