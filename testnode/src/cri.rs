//! A blocking CRI client over containerd's Unix socket: the generated `k8s-cri` v1 clients
//! (tonic), each call driven on a small runtime of the node's own, so tests stay synchronous.

use std::{io, path::Path, time::Duration};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::{
    image_service_client::ImageServiceClient, runtime_service_client::RuntimeServiceClient, *,
};
use tonic::transport::{Channel, Endpoint, Uri};

/// How long one CRI call may take. StopPodSandbox waits for the sandbox's containers to stop
/// (each with its own grace period, at most 30 s in these tests).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The runtime and image services of one containerd.
pub(crate) struct Cri {
    rt: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

fn status_error(what: &str, s: tonic::Status) -> io::Error {
    io::Error::other(format!("CRI {what}: {}: {}", s.code(), s.message()))
}

impl Cri {
    /// Connects to the CRI service on `socket`.
    pub(crate) fn connect(socket: &Path) -> io::Result<Cri> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("testnode-cri")
            .enable_all()
            .build()?;
        let path = socket.to_path_buf();
        let channel = rt.block_on(async move {
            // The URI is required by tonic but unused: every connection goes to the socket.
            Endpoint::try_from("http://[::1]:50051")
                .map_err(io::Error::other)?
                .timeout(CALL_TIMEOUT)
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, io::Error>(TokioIo::new(stream))
                    }
                }))
                .await
                .map_err(|e| io::Error::other(format!("connecting to the CRI socket: {e}")))
        })?;
        Ok(Cri {
            rt,
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        })
    }

    /// `runtime_name runtime_version (CRI runtime_api_version)`.
    pub(crate) fn version(&self) -> io::Result<VersionResponse> {
        let mut c = self.runtime.clone();
        self.rt
            .block_on(c.version(VersionRequest::default()))
            .map(tonic::Response::into_inner)
            .map_err(|s| status_error("Version", s))
    }

    pub(crate) fn image_present(&self, image: &str) -> io::Result<bool> {
        let mut c = self.images.clone();
        let req = ImageStatusRequest {
            image: Some(ImageSpec {
                image: image.to_owned(),
                ..Default::default()
            }),
            verbose: false,
        };
        self.rt
            .block_on(c.image_status(req))
            .map(|r| r.into_inner().image.is_some())
            .map_err(|s| status_error("ImageStatus", s))
    }

    pub(crate) fn run_pod_sandbox(
        &self,
        config: PodSandboxConfig,
        runtime_handler: &str,
    ) -> io::Result<String> {
        let mut c = self.runtime.clone();
        let req = RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: runtime_handler.to_owned(),
        };
        self.rt
            .block_on(c.run_pod_sandbox(req))
            .map(|r| r.into_inner().pod_sandbox_id)
            .map_err(|s| status_error("RunPodSandbox", s))
    }

    pub(crate) fn stop_pod_sandbox(&self, id: &str) -> io::Result<()> {
        let mut c = self.runtime.clone();
        let req = StopPodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        self.rt
            .block_on(c.stop_pod_sandbox(req))
            .map(drop)
            .map_err(|s| status_error("StopPodSandbox", s))
    }

    pub(crate) fn remove_pod_sandbox(&self, id: &str) -> io::Result<()> {
        let mut c = self.runtime.clone();
        let req = RemovePodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        self.rt
            .block_on(c.remove_pod_sandbox(req))
            .map(drop)
            .map_err(|s| status_error("RemovePodSandbox", s))
    }

    pub(crate) fn list_pod_sandboxes(&self) -> io::Result<Vec<String>> {
        let mut c = self.runtime.clone();
        self.rt
            .block_on(c.list_pod_sandbox(ListPodSandboxRequest::default()))
            .map(|r| r.into_inner().items.into_iter().map(|s| s.id).collect())
            .map_err(|s| status_error("ListPodSandbox", s))
    }

    pub(crate) fn create_container(
        &self,
        sandbox: &str,
        config: ContainerConfig,
        sandbox_config: PodSandboxConfig,
    ) -> io::Result<String> {
        let mut c = self.runtime.clone();
        let req = CreateContainerRequest {
            pod_sandbox_id: sandbox.to_owned(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        self.rt
            .block_on(c.create_container(req))
            .map(|r| r.into_inner().container_id)
            .map_err(|s| status_error("CreateContainer", s))
    }

    pub(crate) fn start_container(&self, id: &str) -> io::Result<()> {
        let mut c = self.runtime.clone();
        let req = StartContainerRequest {
            container_id: id.to_owned(),
        };
        self.rt
            .block_on(c.start_container(req))
            .map(drop)
            .map_err(|s| status_error("StartContainer", s))
    }

    /// Stops a container: its stop signal, then SIGKILL after `timeout` seconds (0: SIGKILL
    /// at once).
    pub(crate) fn stop_container(&self, id: &str, timeout: i64) -> io::Result<()> {
        let mut c = self.runtime.clone();
        let req = StopContainerRequest {
            container_id: id.to_owned(),
            timeout,
        };
        self.rt
            .block_on(c.stop_container(req))
            .map(drop)
            .map_err(|s| status_error("StopContainer", s))
    }

    pub(crate) fn container_status(&self, id: &str) -> io::Result<ContainerStatusResponse> {
        let mut c = self.runtime.clone();
        let req = ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: true,
        };
        self.rt
            .block_on(c.container_status(req))
            .map(tonic::Response::into_inner)
            .map_err(|s| status_error("ContainerStatus", s))
    }

    pub(crate) fn pod_sandbox_status(&self, id: &str) -> io::Result<PodSandboxStatusResponse> {
        let mut c = self.runtime.clone();
        let req = PodSandboxStatusRequest {
            pod_sandbox_id: id.to_owned(),
            verbose: true,
        };
        self.rt
            .block_on(c.pod_sandbox_status(req))
            .map(tonic::Response::into_inner)
            .map_err(|s| status_error("PodSandboxStatus", s))
    }
}
