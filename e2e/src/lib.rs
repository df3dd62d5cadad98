//! Real-cluster end-to-end tests live in `e2e/tests/`; they need a kube context (kind, k3d or
//! any cluster) and run with `make e2e`. See `e2e/README.md`.
