//! Disk images for lct: streamed, compressed, onto disks and block volumes.
//!
//! Image streaming is built in its own issue; this build has the command skeleton only.
