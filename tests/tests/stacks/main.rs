//! The stacks' lifecycles on machine nodes, in one test binary so that they run side by side
//! (`--test-threads`): each boots its own lab and spends most of its time waiting on machines
//! and package installs, which overlap well; as binaries of their own they ran one after
//! another.

mod bake;
mod plan_etcd;
mod plan_galera;
mod plan_glusterfs;
mod plan_hdfs;
mod plan_rabbitmq;
mod plan_redis;
