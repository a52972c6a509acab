//! Kernel tests in network namespaces (root).
