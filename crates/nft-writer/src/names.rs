//! Every table, chain and map name the ruleset uses. Names are data: they
//! come from the constants and functions here and nothing parses them back.

use std::net::IpAddr;

use api_watch::{ObjectKey, Protocol};

/// The table nftopo owns in each family.
pub const TABLE: &str = "nftopo";
/// The version of the table layout this build plans (which chains, maps
/// and element encodings it uses), recorded in each table's user data.
/// The engine converges a table of the same layout and replaces one of
/// any other (once, with a log line). Raise it whenever a change to the
/// planner could not be reached by converging object by object.
pub const LAYOUT: u32 = 4;
/// Base chain: nat prerouting (traffic arriving from pods and the network).
pub const NAT_PREROUTING: &str = "nat-prerouting";
/// Base chain: nat output (traffic from the node itself).
pub const NAT_OUTPUT: &str = "nat-output";
/// Base chain: nat postrouting (masquerade of marked packets).
pub const NAT_POSTROUTING: &str = "nat-postrouting";
/// Base chain: filter forward (rejects traffic to services without endpoints).
pub const FILTER_FORWARD: &str = "filter-forward";
/// Base chain: filter output (the same for traffic from the node).
pub const FILTER_OUTPUT: &str = "filter-output";
/// Regular chain: dispatches on destination IP, protocol and port.
pub const SERVICES: &str = "services";
/// Regular chain: refuses (TCP reset for TCP, ICMP port unreachable else).
pub const REJECT_CHAIN: &str = "reject-chain";
/// Map: service IP . protocol . port to the service port's chain (the
/// service ports that are not plain).
pub const SERVICE_IPS: &str = "service-ips";
/// Set: cluster IP . protocol . port of the plain service ports (no
/// session affinity, endpoints): `services` marks their traffic for
/// masquerade as the settings ask and sends it to `spread`, with no chain
/// of their own.
pub const PLAIN_CLUSTER_IPS: &str = "plain-cluster-ips";
/// Set: external or load-balancer IP . protocol . port of the plain
/// service ports with externalTrafficPolicy Cluster: marked for
/// masquerade, then `spread`.
pub const PLAIN_EXTERNAL_IPS: &str = "plain-external-ips";
/// Set: protocol . node port of the plain service ports with
/// externalTrafficPolicy Cluster: marked for masquerade, then
/// `spread-port`.
pub const PLAIN_NODEPORTS: &str = "plain-nodeports";
/// Set: service IP . protocol . port of service ports without usable
/// endpoints that refuse new connections (`goto reject-chain`).
pub const NO_ENDPOINT_REJECT: &str = "no-endpoint-reject";
/// Set: the same for service ports that drop them (endpoints exist, but
/// the traffic policy allows none on this node).
pub const NO_ENDPOINT_DROP: &str = "no-endpoint-drop";
/// Map: service IP . protocol . port . endpoint index to endpoint IP . port.
pub const SERVICE_ENDPOINTS: &str = "service-endpoints";
/// Map: protocol . node port to the service port's node-port chain.
pub const SERVICE_NODEPORTS: &str = "service-nodeports";
/// Set: protocol . node port of service ports without usable endpoints
/// that refuse new connections.
pub const NO_ENDPOINT_NODEPORTS_REJECT: &str = "no-endpoint-nodeports-reject";
/// Set: the same for node ports that drop them.
pub const NO_ENDPOINT_NODEPORTS_DROP: &str = "no-endpoint-nodeports-drop";
/// Map: protocol . node port . endpoint index to endpoint IP . port.
pub const NODEPORT_ENDPOINTS: &str = "nodeport-endpoints";
/// Map: load-balancer IP . protocol . port to its source-range chain.
pub const FIREWALL_IPS: &str = "firewall-ips";
/// Set: (endpoint, endpoint) pairs of this node's endpoints: a pod that
/// reaches itself through a service is masqueraded (hairpin).
pub const HAIRPIN: &str = "hairpin";
/// Base chain: filter prerouting (loadBalancerSourceRanges, before DNAT).
pub const FILTER_PREROUTING: &str = "filter-prerouting";
/// Base chain: filter input (refuses node ports without endpoints).
pub const FILTER_INPUT: &str = "filter-input";
/// Base chain: filter output after DNAT (priority -90): the node's own
/// traffic that no service took, checked against the cluster IPs.
pub const FILTER_OUTPUT_POST_DNAT: &str = "filter-output-post-dnat";
/// Regular chain: refuses new connections to a cluster IP on a port no
/// service port defines, and drops those to an unallocated address of a
/// ServiceCIDR (kube-proxy's `cluster-ips-check`).
pub const CLUSTER_IPS_CHECK: &str = "cluster-ips-check";
/// Set: every active cluster IP (kube-proxy's `cluster-ips`).
pub const CLUSTER_IPS: &str = "cluster-ips";

/// Longest chain name we produce; the kernel allows 255 bytes, but short
/// names keep `nft list` readable.
pub const MAX_CHAIN_NAME: usize = 64;

/// The chain that spreads new connections over the endpoints of a service
/// address: one rule per endpoint count N in use, `dnat … numgen random
/// mod N offset spread_offset(N) map @service-endpoints`.
pub const SPREAD: &str = "spread";

/// The same for node ports (key without the destination address).
pub const SPREAD_PORT: &str = "spread-port";

/// Where the endpoint indices of a service port with `endpoints`
/// endpoints start in `service-endpoints` / `nodeport-endpoints`: N(N-1)/2,
/// so that the ranges of different N never overlap and the rule of
/// another N finds no element. `None` past the 32-bit index space (more
/// than 92,681 endpoints).
pub fn spread_offset(endpoints: usize) -> Option<u32> {
    let n = u64::try_from(endpoints).ok()?;
    let offset = n.checked_mul(n.checked_sub(1)?)? / 2;
    // The kernel refuses offset + N - 1 past u32 (`nft_ng_random_init`).
    u32::try_from(offset + n - 1).ok()?;
    u32::try_from(offset).ok()
}

/// The dynamic set of the clients of one endpoint of one service port
/// under session affinity (kube-proxy's `affinity-HASH-…` sets):
/// `aff-HASH-ns/name/proto/port__ip/targetport`, HASH as in
/// [`service_chain`] but over the service port's identity, the endpoint's
/// address and port, and the affinity `timeout` (seconds), truncated to
/// [`MAX_CHAIN_NAME`]. IPv6 colons read as dots, as upstream writes them.
///
/// The name depends on who the endpoint is, never on where it sits in a
/// list or which entry point (cluster IP, external or load-balancer IP,
/// node port) leads to it: every chain of the service port that can DNAT
/// to the endpoint checks and refreshes this one set, and the set
/// outlives any change to the other endpoints. A new timeout is a new
/// name (a set's timeout cannot change in place), so the clients recorded
/// under the old timeout are forgotten once.
pub fn affinity_set(
    service: &ObjectKey,
    port_name: &str,
    proto: Protocol,
    port: u16,
    endpoint: (IpAddr, u16),
    timeout: u32,
) -> String {
    let (ip, target_port) = endpoint;
    let (readable, identity) = port_identity(service, port_name, proto, port);
    let readable = format!(
        "{readable}__{}/{target_port}",
        ip.to_string().replace(':', ".")
    );
    let identity = format!("{identity}\0{ip}\0{target_port}\0{timeout}");
    hashed("aff", &identity, &readable)
}

/// The chain of one service port: `svc-HASH-ns/name/proto/port`, where
/// HASH (16 characters of base32 of the SHA-256 of the full identity:
/// 80 bits, as kube-proxy's `hashAndTruncate`) keeps names unique when
/// the readable part is truncated to [`MAX_CHAIN_NAME`].
pub fn service_chain(service: &ObjectKey, port_name: &str, proto: Protocol, port: u16) -> String {
    port_chain("svc", service, port_name, proto, port)
}

/// A chain of one service port with another role, named like
/// [`service_chain`] with prefix `kind`: `ext` (external IPs and
/// load-balancer IPs), `np` (the node port), `clu` / `clunp` (the cluster
/// endpoints for external traffic), `loc` (the local endpoints), `fw`
/// (loadBalancerSourceRanges).
pub fn port_chain(
    kind: &str,
    service: &ObjectKey,
    port_name: &str,
    proto: Protocol,
    port: u16,
) -> String {
    let (readable, identity) = port_identity(service, port_name, proto, port);
    hashed(kind, &identity, &readable)
}

/// The readable part (`ns/name/proto/port`, the port's name where it has
/// one) and the full identity (the same plus the port number) of one
/// service port.
fn port_identity(
    service: &ObjectKey,
    port_name: &str,
    proto: Protocol,
    port: u16,
) -> (String, String) {
    let port_part = if port_name.is_empty() {
        port.to_string()
    } else {
        port_name.to_string()
    };
    let readable = format!(
        "{}/{}/{}/{}",
        service.namespace,
        service.name,
        proto.nft_name(),
        port_part
    );
    let identity = format!("{readable}\0{port}");
    (readable, identity)
}

/// `kind-HASH-readable`: HASH over `identity`, `readable` made one `nft`
/// word, the whole cut to [`MAX_CHAIN_NAME`].
fn hashed(kind: &str, identity: &str, readable: &str) -> String {
    let mut name = format!(
        "{kind}-{}-{}",
        short_hash(identity.as_bytes()),
        nft_safe(readable)
    );
    name.truncate(MAX_CHAIN_NAME);
    name
}

/// `s` with every character that `nft` does not accept in an unquoted
/// name (letters, digits, `/`, `-`, `_`, `.`) replaced by `_`: the
/// loader only lets Kubernetes names through, but a chain name must stay
/// one `nft` word (and NUL-free for netlink) whatever the input. The hash
/// is over the original, so replaced names stay unique.
fn nft_safe(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '/' | '-' | '_' | '.' => c,
            _ => '_',
        })
        .collect()
}

/// Characters of [`short_hash`]: 16 of base32, 80 bits.
pub const HASH_CHARS: usize = 16;

/// [`HASH_CHARS`] characters of RFC 4648 base32 (uppercase) of the
/// SHA-256 of `data`. A cryptographic hash, wide enough that no two
/// identities of one cluster share a name by chance (two names collide
/// with a probability of about n² / 2⁸¹ for n names: 4·10⁻¹⁵ for a
/// million); a 40-bit FNV hash, as before, let chosen names collide.
fn short_hash(data: &[u8]) -> String {
    use sha2::Digest;
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = sha2::Sha256::digest(data);
    let mut bits: u128 = 0;
    for b in &digest[..16] {
        bits = (bits << 8) | u128::from(*b);
    }
    (0..HASH_CHARS)
        .map(|i| ALPHABET[((bits >> (123 - 5 * i)) & 31) as usize] as char)
        .collect()
}

#[cfg(test)]
mod tests;
