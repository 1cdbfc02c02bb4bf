//! Authoritative DNS for lct clusters: zones from the inventory, split-horizon views, live updates.
//!
//! The embedded authoritative DNS server (hickory) is built in its own issue; this build has the command skeleton only.
