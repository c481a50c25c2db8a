//! Objects decoded one by one: a watcher of `Lenient<K>` lists and
//! watches K, but an item that does not decode as K (a wrong JSON type in
//! one field) becomes [`Lenient::Undecodable`] with its metadata and the
//! field that failed, instead of failing the list of every object of the
//! kind. The tracker then skips it like any other bad object, with one
//! warning and `nftopo_objects_skipped_total`.

use std::borrow::Cow;
use std::time::SystemTime;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher::Event;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use super::kinds::{Kind, Watched};
use crate::convert::FieldError;
use crate::{ClusterState, ObjectKey};

/// A watched object, decoded, or not with why.
#[derive(Debug, Clone)]
pub enum Lenient<K> {
    /// It decoded as K.
    Decoded(K),
    /// It did not: its metadata (for its name, and its deletion), the
    /// field and the decoder's message.
    Undecodable {
        /// The object's metadata, as far as it decodes.
        metadata: Box<ObjectMeta>,
        /// The field that failed, e.g. `spec.ports[0].port`.
        field: String,
        /// What the decoder said.
        message: String,
    },
}

impl<K> From<K> for Lenient<K> {
    fn from(k: K) -> Self {
        Lenient::Decoded(k)
    }
}

/// An event of decoded objects as one of [`Lenient`] objects.
pub fn decoded<K>(event: Event<K>) -> Event<Lenient<K>> {
    match event {
        Event::Apply(k) => Event::Apply(k.into()),
        Event::Delete(k) => Event::Delete(k.into()),
        Event::Init => Event::Init,
        Event::InitApply(k) => Event::InitApply(k.into()),
        Event::InitDone => Event::InitDone,
    }
}

impl<'de, K: DeserializeOwned> Deserialize<'de> for Lenient<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        match serde_path_to_error::deserialize::<_, K>(&value) {
            Ok(k) => Ok(Lenient::Decoded(k)),
            Err(e) => Ok(Lenient::Undecodable {
                metadata: Box::new(
                    value
                        .get("metadata")
                        .and_then(|m| ObjectMeta::deserialize(m).ok())
                        .unwrap_or_default(),
                ),
                field: e.path().to_string(),
                message: e.into_inner().to_string(),
            }),
        }
    }
}

impl<K: Resource<DynamicType = ()>> Resource for Lenient<K> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        match self {
            Lenient::Decoded(k) => k.meta(),
            Lenient::Undecodable { metadata, .. } => metadata,
        }
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Lenient::Decoded(k) => k.meta_mut(),
            Lenient::Undecodable { metadata, .. } => metadata,
        }
    }
}

impl<K: Watched + Resource<DynamicType = ()>> Watched for Lenient<K> {
    type Model = K::Model;
    const KIND: Kind = K::KIND;

    fn meta(&self) -> &ObjectMeta {
        Resource::meta(self)
    }
    fn convert(&self) -> Result<K::Model, FieldError> {
        match self {
            Lenient::Decoded(k) => k.convert(),
            Lenient::Undecodable { field, message, .. } => Err(FieldError::new(
                field.clone(),
                format!("cannot decode: {message}"),
            )),
        }
    }
    fn get<'a>(state: &'a ClusterState, id: &ObjectKey) -> Option<&'a K::Model> {
        K::get(state, id)
    }
    fn insert(state: &mut ClusterState, id: &ObjectKey, model: K::Model) {
        K::insert(state, id, model)
    }
    fn remove(state: &mut ClusterState, id: &ObjectKey) {
        K::remove(state, id)
    }
    fn ids(state: &ClusterState) -> Vec<ObjectKey> {
        K::ids(state)
    }
    fn trigger_time(&self) -> Option<SystemTime> {
        match self {
            Lenient::Decoded(k) => k.trigger_time(),
            Lenient::Undecodable { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1 as core;
    use serde_json::json;

    #[test]
    fn an_item_with_a_wrong_type_keeps_its_name_and_the_field() {
        let list: Vec<Lenient<core::Service>> = serde_json::from_value(json!([
            {"metadata": {"name": "good", "namespace": "shop"},
             "spec": {"ports": [{"port": 80}]}},
            {"metadata": {"name": "bad", "namespace": "shop"},
             "spec": {"ports": [{"port": "eighty"}]}},
        ]))
        .expect("the list decodes");
        assert!(
            matches!(&list[0], Lenient::Decoded(s) if s.metadata.name.as_deref() == Some("good"))
        );
        match &list[1] {
            Lenient::Undecodable {
                metadata,
                field,
                message,
            } => {
                assert_eq!(metadata.name.as_deref(), Some("bad"));
                assert_eq!(field, "spec.ports[0].port");
                assert!(message.contains("invalid type"), "{message}");
            }
            other => panic!("decoded: {other:?}"),
        }
        let err = Watched::convert(&list[1]).unwrap_err();
        assert_eq!(err.field, "spec.ports[0].port");
        assert_eq!(Watched::id(&list[1]), ObjectKey::new("shop", "bad"));
    }
}
