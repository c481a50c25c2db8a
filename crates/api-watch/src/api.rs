//! The API-server source: kube-rs watchers for Services,
//! EndpointSlices (discovery.k8s.io/v1), Nodes and ServiceCIDRs
//! (networking.k8s.io/v1, optional: a cluster without them has none), and
//! Calico BlockAffinities when routes come from Calico IPAM, reduced to the same
//! [`ClusterState`](crate::ClusterState) as the file source.
//!
//! One store: the watchers' events are merged into one stream
//! ([`Watches`]) and applied in place to one [`Tracker`] (kube-rs's
//! reflector pattern, keeping converted model objects only); its owner
//! reads the state from it and is handed out what changed
//! ([`WatchChanges`]). Nothing is handed out before every watched kind has
//! completed its first list: a restart must never see an empty cluster.
//! Bad objects are skipped, one [`ObjectError`] each. The deciding part is
//! the pure [`Tracker`] (events in, changes out).

mod backoff;
mod changes;
mod kinds;
mod lenient;
#[cfg(test)]
mod selector_tests;
#[cfg(test)]
mod snapshot;
#[cfg(test)]
mod tests;
mod tracker;
mod watches;

use std::path::{Path, PathBuf};

use futures::StreamExt;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::networking::v1 as networking;
use kube::api::DynamicObject;
use kube::config::{InClusterError, KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Config, Resource};

pub use backoff::OutageBackoff;
pub use kinds::Kind;
pub use lenient::{decoded, Lenient};
pub use tracker::{ObjectError, Tracker, WatchChanges};
pub use watches::Watches;

/// Why no client could be built. None of these is retried: the
/// configuration must be fixed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The kubeconfig file given (`--kubeconfig`) could not be read or
    /// used.
    #[error("kubeconfig {}: {source}", path.display())]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        source: KubeconfigError,
    },
    /// No kubeconfig was given, and neither the in-cluster config (service
    /// account) nor the default kubeconfig could be loaded.
    #[error(
        "no kubeconfig given; in-cluster config (service account): {in_cluster}; \
         default kubeconfig ($KUBECONFIG or ~/.kube/config): {kubeconfig}"
    )]
    NoConfig {
        /// Why the in-cluster config failed.
        in_cluster: InClusterError,
        /// Why the default kubeconfig failed.
        kubeconfig: KubeconfigError,
    },
    /// The configuration loaded but no client could be built from it
    /// (e.g. bad TLS material).
    #[error("building the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

/// A client for the API server: from `kubeconfig` when given, else the
/// in-cluster config (service account token and CA, `KUBERNETES_SERVICE_HOST`),
/// else the default kubeconfig (`$KUBECONFIG` or `~/.kube/config`), like
/// kube-proxy's `--kubeconfig`.
pub async fn connect(kubeconfig: Option<&Path>) -> Result<Client, ApiError> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig_error = |source| ApiError::Kubeconfig {
                path: path.to_path_buf(),
                source,
            };
            let file = Kubeconfig::read_from(path).map_err(kubeconfig_error)?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(kubeconfig_error)?
        }
        None => match Config::incluster() {
            Ok(config) => config,
            Err(in_cluster) => Config::from_kubeconfig(&KubeConfigOptions::default())
                .await
                .map_err(|kubeconfig| ApiError::NoConfig {
                    in_cluster,
                    kubeconfig,
                })?,
        },
    };
    Client::try_from(config).map_err(ApiError::Client)
}

/// Starts watching Services, EndpointSlices, Nodes and ServiceCIDRs in
/// all namespaces (and Calico `BlockAffinity` objects when
/// `block_affinities`), each
/// through a kube-rs watcher that retries as [`OutageBackoff`] says (the
/// watcher re-lists by itself after `410 Gone` or a dropped stream). No kube-rs
/// reflector store is kept: the [`Tracker`] is the store, holding each
/// object once, converted to the model (a reflector's copy of the raw
/// objects doubled the daemon's memory). The watches stop when the
/// returned [`Watches`] is dropped. The requests it makes are
/// [`access`]'s.
pub fn watch(client: Client, block_affinities: bool) -> Watches {
    let config = watcher::Config::default;
    // Services and slices handed to another proxy, or of headless
    // Services, are left out by the API server, which sends DELETED when
    // an object gains such a label (kube-proxy's informers do the same).
    let proxied = || config().labels(&proxied_selector());
    let service_events = watcher(
        Api::<Lenient<core::Service>>::all(client.clone()),
        proxied(),
    )
    .backoff(OutageBackoff::default())
    .boxed();
    let slice_events = watcher(
        Api::<Lenient<discovery::EndpointSlice>>::all(client.clone()),
        proxied(),
    )
    .backoff(OutageBackoff::default())
    .boxed();
    let node_events = watcher(Api::<Lenient<core::Node>>::all(client.clone()), config())
        .backoff(OutageBackoff::default())
        .boxed();
    // Optional: a list that fails (404 without the API, 403 without the
    // permission) counts as "no ServiceCIDRs" (Watches::with_service_cidrs).
    let cidr_events = watcher(
        Api::<Lenient<networking::ServiceCIDR>>::all(client.clone()),
        config(),
    )
    .backoff(OutageBackoff::default())
    .boxed();
    let watches = Watches::from_streams(service_events, slice_events, node_events)
        .with_service_cidrs(cidr_events);
    if block_affinities {
        let resource = kinds::block_affinity_resource();
        let block_events = watcher(Api::<DynamicObject>::all_with(client, &resource), config())
            .backoff(OutageBackoff::default())
            .boxed();
        watches.with_block_affinities(block_events)
    } else {
        watches
    }
}

/// The label selector [`watch`] lists and watches Services and
/// EndpointSlices with, as kube-proxy's informers do:
/// `!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless`
/// (objects carrying either label, whatever its value, are not proxied).
pub fn proxied_selector() -> String {
    crate::convert::UNPROXIED_LABELS
        .map(|label| format!("!{label}"))
        .join(",")
}

/// One kind of request [`watch`] makes of the API server: what the
/// daemon's RBAC role must allow.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiAccess {
    /// The API group (`""` for the core group).
    pub group: String,
    /// The resource (plural), e.g. `endpointslices`.
    pub resource: String,
    /// The verbs, e.g. `["list", "watch"]`.
    pub verbs: Vec<&'static str>,
}

/// The requests [`watch`] makes, derived from the types it watches: a
/// watcher lists, then watches. With `block_affinities`, Calico's
/// BlockAffinities too.
///
/// ServiceCIDRs are asked for whatever the settings; a cluster that
/// refuses (no permission, or no such API) still gets its Services
/// programmed, without the drop of unallocated service addresses.
pub fn access(block_affinities: bool) -> Vec<ApiAccess> {
    fn of<K: Resource<DynamicType = ()>>() -> ApiAccess {
        ApiAccess {
            group: K::group(&()).into_owned(),
            resource: K::plural(&()).into_owned(),
            verbs: WATCHER_VERBS.to_vec(),
        }
    }
    let mut out = vec![
        of::<core::Service>(),
        of::<discovery::EndpointSlice>(),
        of::<core::Node>(),
        of::<networking::ServiceCIDR>(),
    ];
    if block_affinities {
        let resource = kinds::block_affinity_resource();
        out.push(ApiAccess {
            group: DynamicObject::group(&resource).into_owned(),
            resource: DynamicObject::plural(&resource).into_owned(),
            verbs: WATCHER_VERBS.to_vec(),
        });
    }
    out
}

/// What a kube-rs watcher asks for: a list, then a watch from its
/// resourceVersion (again after `410 Gone`).
const WATCHER_VERBS: [&str; 2] = ["list", "watch"];
