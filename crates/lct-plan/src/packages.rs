//! The plans built into lct (`crates/lct-plan/plans/NAME/`), with the files their hooks run.

/// A plan built into lct, with the files its hooks run.
pub struct Package {
    pub name: &'static str,
    pub plan: &'static str,
    /// Hook scripts and playbooks by their path in the plan.
    pub files: &'static [(&'static str, &'static str)],
}

/// The plans built into lct (`crates/lct-plan/plans/NAME/`).
pub const PACKAGES: &[Package] = &[
    Package {
        name: "zookeeper",
        plan: include_str!("../plans/zookeeper/plan.yaml"),
        files: &[("configure.py", include_str!("../plans/zookeeper/configure.py"))],
    },
    Package {
        name: "dns-private",
        plan: include_str!("../plans/dns-private/plan.yaml"),
        files: &[("configure.py", include_str!("../plans/dns-private/configure.py"))],
    },
    Package {
        name: "hdfs-ha",
        plan: include_str!("../plans/hdfs-ha/plan.yaml"),
        files: &[("hadoop.py", include_str!("../plans/hdfs-ha/hadoop.py"))],
    },
    Package {
        name: "rabbitmq",
        plan: include_str!("../plans/rabbitmq/plan.yaml"),
        files: &[("configure.py", include_str!("../plans/rabbitmq/configure.py"))],
    },
    Package {
        name: "postgres-ha",
        plan: include_str!("../plans/postgres-ha/plan.yaml"),
        files: &[
            ("configure.py", include_str!("../plans/postgres-ha/configure.py")),
            ("resume.py", include_str!("../plans/postgres-ha/resume.py")),
        ],
    },
    Package {
        name: "redis-sentinel",
        plan: include_str!("../plans/redis-sentinel/plan.yaml"),
        files: &[("configure.py", include_str!("../plans/redis-sentinel/configure.py"))],
    },
    Package {
        name: "etcd",
        plan: include_str!("../plans/etcd/plan.yaml"),
        files: &[("configure.py", include_str!("../plans/etcd/configure.py"))],
    },
    Package {
        name: "mariadb-galera",
        plan: include_str!("../plans/mariadb-galera/plan.yaml"),
        files: &[
            ("configure.py", include_str!("../plans/mariadb-galera/configure.py")),
            ("join.py", include_str!("../plans/mariadb-galera/join.py")),
            ("stop.py", include_str!("../plans/mariadb-galera/stop.py")),
        ],
    },
    Package {
        name: "glusterfs",
        plan: include_str!("../plans/glusterfs/plan.yaml"),
        files: &[("configure.py", include_str!("../plans/glusterfs/configure.py"))],
    },
];
