//! [`Provider`] for the local cloud: each operation's blocking work (the lab's lock, `ip`,
//! `losetup`, systemd-nspawn) runs on tokio's blocking threads, off the async runtime.

use lct_core::record::{Name, Node, NodeSpec, ProviderName, Status, Volume};

use super::{LocalCloud, NodeImage, Seed};
use crate::disk_image::{DiskCapture, LctImage};
use crate::provider::{CreateOrder, Provider, ProviderError, VolumeSpec};

impl Provider for LocalCloud {
    fn name(&self) -> ProviderName {
        ProviderName::Local
    }

    fn create_order(&self) -> CreateOrder {
        CreateOrder::InOrder
    }

    fn ready_answers_ssh(&self) -> bool {
        true
    }

    async fn provide_packages(&self, packages: &[String]) -> Result<(), ProviderError> {
        if packages.is_empty() {
            return Ok(());
        }
        let packages = packages.to_vec();
        self.blocking(move |cloud| cloud.images().add_packages(&packages).map(drop)).await
    }

    async fn prepare_image(&self, image: &str, disk_mib: Option<u64>) -> Result<(), ProviderError> {
        let Some(lct) = LctImage::parse(image) else { return NodeImage::parse(Some(image)).map(drop) };
        self.blocking(move |cloud| cloud.images().prepare_lct(&lct, disk_mib).map(drop)).await
    }

    async fn capture_disk(&self, name: &Name) -> Result<DiskCapture, ProviderError> {
        let name = name.clone();
        self.blocking(move |cloud| cloud.capture(&name).map(DiskCapture::Here)).await
    }

    async fn release_capture(&self, name: &Name) -> Result<(), ProviderError> {
        let name = name.clone();
        self.blocking(move |cloud| cloud.release(&name)).await
    }

    async fn list(&self) -> Result<Vec<Node>, ProviderError> {
        self.blocking(|cloud| cloud.list_nodes()).await
    }

    async fn create(&self, spec: &NodeSpec) -> Result<Node, ProviderError> {
        let spec = spec.clone();
        self.blocking(move |cloud| cloud.create_seeded(&spec, Seed::Merged(spec.user_data.as_deref()))).await
    }

    /// One create for many machines (one lock, made side by side): see
    /// [`LocalCloud::create_all`]. A single node takes the plain path.
    async fn create_batch(&self, specs: &[NodeSpec]) -> Option<Vec<Result<Node, ProviderError>>> {
        if specs.len() < 2 {
            return None;
        }
        let (count, specs) = (specs.len(), specs.to_vec());
        Some(match self.blocking(move |cloud| Ok(cloud.create_all(&specs))).await {
            Ok(outcomes) => outcomes,
            Err(e) => (0..count).map(|_| Err(ProviderError::Invalid(e.to_string()))).collect(),
        })
    }

    async fn wait_ready(&self, node: Node) -> Result<Node, ProviderError> {
        if node.status == Status::Booting { self.wait_machine(node).await } else { Ok(node) }
    }

    async fn start(&self, name: &Name) -> Result<Node, ProviderError> {
        let name = name.clone();
        let node = self.blocking(move |cloud| cloud.set_power(&name, true)).await?;
        self.wait_ready(node).await
    }

    async fn stop(&self, name: &Name) -> Result<Node, ProviderError> {
        let name = name.clone();
        self.blocking(move |cloud| cloud.set_power(&name, false)).await
    }

    async fn delete(&self, name: &Name) -> Result<bool, ProviderError> {
        let name = name.clone();
        self.blocking(move |cloud| cloud.delete_node(&name)).await
    }

    async fn volumes(&self) -> Result<Vec<Volume>, ProviderError> {
        self.blocking(|cloud| cloud.list_volumes()).await
    }

    async fn create_volume(&self, spec: &VolumeSpec) -> Result<Volume, ProviderError> {
        let spec = spec.clone();
        self.blocking(move |cloud| cloud.make_volume(&spec)).await
    }

    async fn attach_volume(&self, label: &Name, node: &Name) -> Result<Volume, ProviderError> {
        let (label, node) = (label.clone(), node.clone());
        self.blocking(move |cloud| cloud.attach(&label, &node)).await
    }

    async fn detach_volume(&self, label: &Name) -> Result<Volume, ProviderError> {
        let label = label.clone();
        self.blocking(move |cloud| cloud.detach(&label)).await
    }

    async fn delete_volume(&self, label: &Name) -> Result<bool, ProviderError> {
        let label = label.clone();
        self.blocking(move |cloud| cloud.remove_volume(&label)).await
    }
}
