//! Empty library target so that `connlife` can name this crate as a build-dependency (cargo then
//! rebuilds the agent when the kernel programs change); the programs live in `main.rs`.
#![no_std]
