//! /etc/hosts for lct clusters: render and apply managed blocks, in step with membership.
//!
//! Rendering and applying hosts files are built in their own issue; this build has the command skeleton only.
