//! Host firewalls for lct clusters: nftables (iptables fallback) rules that follow membership.
//!
//! The nftables and iptables backends are built in their own issue; this build has the command skeleton only.
