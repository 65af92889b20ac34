//! PersistentVolume binding, as kube-controller-manager's binder, with a simulated
//! provisioner for the simulated host: a Pending claim is bound to the smallest
//! Available volume of its class that is big enough and offers its access modes; if
//! none and its class's provisioner is [`SIMULATED_PROVISIONER`], a volume of the
//! requested size is made for it (`pvc-<claim uid>`) and bound. A bound claim whose
//! volume is gone is `Lost`; a volume whose claim is gone is deleted (reclaim policy
//! `Delete`) or `Released` (`Retain`).
//!
//! [`plan`] decides from the claim and the volumes; the rest carries it out.

use crate::runtime::RunLogged;
use crate::util::{Error, pp};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, ListParams, Patch, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const MANAGER: &str = "persistent-volume-binder";
/// The provisioner of the simulated host's volumes.
pub const SIMULATED_PROVISIONER: &str = "vkube.dev/simulated";

/// What to do with a Pending claim.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Bind it to this volume.
    Bind(String),
    /// Make a volume for it with this provisioner, then bind it.
    Provision,
    /// Nothing fits: wait (the reason, for an event).
    Wait(String),
}

fn bytes(q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> i128 {
    q.and_then(|q| vkube_core::quantity::parse_milli(&q.0)).map(|m| m / 1000).unwrap_or(0)
}

fn claim_class(pvc: &PersistentVolumeClaim) -> String {
    pvc.spec.as_ref().and_then(|s| s.storage_class_name.clone()).unwrap_or_default()
}

/// The binder's choice for a Pending claim among the volumes and classes.
pub fn plan(pvc: &PersistentVolumeClaim, volumes: &[PersistentVolume], classes: &[StorageClass]) -> Decision {
    let spec = pvc.spec.clone().unwrap_or_default();
    let class = claim_class(pvc);
    let wanted = bytes(spec.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage")));
    let modes = spec.access_modes.clone().unwrap_or_default();
    let uid = pvc.metadata.uid.clone().unwrap_or_default();
    let fits = |pv: &&PersistentVolume| {
        let s = pv.spec.clone().unwrap_or_default();
        let phase = pv.status.as_ref().and_then(|st| st.phase.clone()).unwrap_or_default();
        let free = s.claim_ref.as_ref().is_none_or(|r| r.uid.as_deref() == Some(uid.as_str()));
        let size = bytes(s.capacity.as_ref().and_then(|c| c.get("storage")));
        let offered = s.access_modes.clone().unwrap_or_default();
        free && (phase == "Available" || phase.is_empty())
            && s.storage_class_name.clone().unwrap_or_default() == class
            && size >= wanted
            && modes.iter().all(|m| offered.contains(m))
    };
    // A volume already reserved for this claim first, then the smallest that fits.
    let mut candidates: Vec<&PersistentVolume> = volumes.iter().filter(fits).collect();
    candidates.sort_by_key(|pv| {
        let reserved = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).is_some();
        (!reserved, bytes(pv.spec.as_ref().and_then(|s| s.capacity.as_ref()).and_then(|c| c.get("storage"))))
    });
    if let Some(pv) = candidates.first() {
        return Decision::Bind(pv.metadata.name.clone().unwrap_or_default());
    }
    match classes.iter().find(|c| c.metadata.name.as_deref() == Some(class.as_str())) {
        Some(c) if c.provisioner == SIMULATED_PROVISIONER => Decision::Provision,
        Some(c) => Decision::Wait(format!(
            "Waiting for a volume to be created either by the external provisioner '{}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.",
            c.provisioner
        )),
        None if class.is_empty() => {
            Decision::Wait("no persistent volumes available for this claim and no storage class is set".into())
        }
        None => Decision::Wait(format!("storageclass.storage.k8s.io \"{class}\" not found")),
    }
}

struct Ctx {
    client: kube::Client,
    recorder: kube::runtime::events::Recorder,
}

/// Run the binder (claims, and volumes whose claims went).
pub async fn run(client: kube::Client) {
    let ctx = Arc::new(Ctx { recorder: crate::util::recorder(&client, MANAGER), client: client.clone() });
    let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let client = client.clone();
    let claims_loop = Controller::new(claims, watcher::Config::default())
        .with_config(crate::util::controller_config())
        .run_logged("persistent-volume-binder", reconcile_claim, ctx.clone());
    // A claim that goes (or changes) brings its volume's reconcile.
    let volumes_loop = Controller::new(volumes, watcher::Config::default())
        .with_config(crate::util::controller_config())
        .watches(Api::<PersistentVolumeClaim>::all(client), watcher::Config::default(), |pvc| {
            let volume = pvc.spec.as_ref().and_then(|s| s.volume_name.clone()).filter(|v| !v.is_empty())?;
            Some(kube::runtime::reflector::ObjectRef::new(&volume))
        })
        .run_logged("persistent-volume-reclaimer", reconcile_volume, ctx);
    tokio::join!(claims_loop, volumes_loop);
}

async fn bind(ctx: &Ctx, pvc: &PersistentVolumeClaim, pv_name: &str) -> Result<(), Error> {
    let ns = pvc.metadata.namespace.clone().unwrap_or_default();
    let name = pvc.metadata.name.clone().unwrap_or_default();
    let pvs: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let claim_ref = json!({"kind": "PersistentVolumeClaim", "namespace": ns, "name": name, "uid": pvc.metadata.uid, "apiVersion": "v1", "resourceVersion": pvc.metadata.resource_version});
    let pv = pvs.patch(pv_name, &pp(MANAGER), &Patch::Merge(json!({"spec": {"claimRef": claim_ref}}))).await?;
    pvs.patch_status(pv_name, &pp(MANAGER), &Patch::Merge(json!({"status": {"phase": "Bound"}}))).await?;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    claims
        .patch(
            &name,
            &pp(MANAGER),
            &Patch::Merge(json!({"metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes"}}, "spec": {"volumeName": pv_name}})),
        )
        .await?;
    let spec = pv.spec.unwrap_or_default();
    let status = json!({"status": {"phase": "Bound", "accessModes": spec.access_modes, "capacity": spec.capacity}});
    claims.patch_status(&name, &pp(MANAGER), &Patch::Merge(status)).await?;
    Ok(())
}

async fn reconcile_claim(pvc: Arc<PersistentVolumeClaim>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let phase = pvc.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    if pvc.metadata.deletion_timestamp.is_some() || (phase != "Pending" && !phase.is_empty()) {
        return Ok(Action::await_change());
    }
    let pvs: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let volumes = pvs.list(&ListParams::default()).await?.items;
    let classes = Api::<StorageClass>::all(ctx.client.clone()).list(&ListParams::default()).await?.items;
    let regarding = kube::Resource::object_ref(&*pvc, &());
    match plan(&pvc, &volumes, &classes) {
        Decision::Bind(pv) => bind(&ctx, &pvc, &pv).await?,
        Decision::Provision => {
            let spec = pvc.spec.clone().unwrap_or_default();
            let uid = pvc.metadata.uid.clone().unwrap_or_default();
            let name = format!("pvc-{uid}");
            let class = claim_class(&pvc);
            let reclaim = classes
                .iter()
                .find(|c| c.metadata.name.as_deref() == Some(class.as_str()))
                .and_then(|c| c.reclaim_policy.clone())
                .unwrap_or_else(|| "Delete".into());
            let size =
                spec.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage")).cloned();
            let pv: PersistentVolume = serde_json::from_value(json!({
                "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": SIMULATED_PROVISIONER}},
                "spec": {
                    "capacity": {"storage": size.map(|q| q.0).unwrap_or_else(|| "1Gi".into())},
                    "accessModes": spec.access_modes.clone().unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
                    "persistentVolumeReclaimPolicy": reclaim,
                    "storageClassName": class,
                    "volumeMode": spec.volume_mode.clone().unwrap_or_else(|| "Filesystem".into()),
                    "hostPath": {"path": format!("/var/lib/vkube-sim/volumes/{name}"), "type": "DirectoryOrCreate"},
                },
            }))?;
            match pvs.create(&PostParams { field_manager: Some(MANAGER.into()), ..Default::default() }, &pv).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
            let msg = format!("Successfully provisioned volume {name} using {SIMULATED_PROVISIONER}");
            crate::util::record(&ctx.recorder, &regarding, false, "ProvisioningSucceeded", "Provisioning", msg).await;
            bind(&ctx, &pvc, &name).await?;
        }
        Decision::Wait(why) => {
            let reason = if why.starts_with("Waiting for a volume") { "ExternalProvisioning" } else { "FailedBinding" };
            crate::util::record(&ctx.recorder, &regarding, reason == "FailedBinding", reason, "Binding", why).await;
            return Ok(Action::requeue(Duration::from_secs(15)));
        }
    }
    Ok(Action::await_change())
}

async fn reconcile_volume(pv: Arc<PersistentVolume>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let spec = pv.spec.clone().unwrap_or_default();
    let name = pv.metadata.name.clone().unwrap_or_default();
    let phase = pv.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    let pvs: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let Some(claim) = spec.claim_ref.as_ref() else {
        if phase.is_empty() || phase == "Pending" {
            pvs.patch_status(&name, &pp(MANAGER), &Patch::Merge(json!({"status": {"phase": "Available"}}))).await?;
        }
        return Ok(Action::await_change());
    };
    if pv.metadata.deletion_timestamp.is_some() || phase == "Released" || phase == "Failed" {
        return Ok(Action::await_change());
    }
    let claims: Api<PersistentVolumeClaim> =
        Api::namespaced(ctx.client.clone(), claim.namespace.as_deref().unwrap_or_default());
    let current = claims.get_opt(claim.name.as_deref().unwrap_or_default()).await?;
    let gone = current.as_ref().is_none_or(|c| c.metadata.uid != claim.uid);
    if !gone {
        return Ok(Action::requeue(Duration::from_secs(60)));
    }
    if spec.persistent_volume_reclaim_policy.as_deref() == Some("Delete") {
        crate::runtime::gone_is_ok(pvs.delete(&name, &DeleteParams::default()).await.map(|_| ()))?;
    } else {
        pvs.patch_status(&name, &pp(MANAGER), &Patch::Merge(json!({"status": {"phase": "Released"}}))).await?;
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pvc(class: &str, size: &str) -> PersistentVolumeClaim {
        serde_json::from_value(json!({"metadata": {"name": "data", "namespace": "default", "uid": "u1"},
            "spec": {"storageClassName": class, "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}}))
        .expect("pvc")
    }

    fn pv(name: &str, class: &str, size: &str, phase: &str) -> PersistentVolume {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"storageClassName": class, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"], "capacity": {"storage": size}}, "status": {"phase": phase}}))
            .expect("pv")
    }

    fn class(name: &str, provisioner: &str) -> StorageClass {
        serde_json::from_value(json!({"metadata": {"name": name}, "provisioner": provisioner})).expect("class")
    }

    #[test]
    fn the_smallest_fitting_available_volume_is_chosen_else_one_is_provisioned() {
        let volumes = [
            pv("big", "fast", "10Gi", "Available"),
            pv("small", "fast", "2Gi", "Available"),
            pv("tiny", "fast", "500Mi", "Available"),
            pv("taken", "fast", "2Gi", "Bound"),
        ];
        assert_eq!(plan(&pvc("fast", "1Gi"), &volumes, &[]), Decision::Bind("small".into()));
        assert_eq!(
            plan(&pvc("standard", "1Gi"), &volumes, &[class("standard", SIMULATED_PROVISIONER)]),
            Decision::Provision
        );
        assert!(
            matches!(plan(&pvc("ebs", "1Gi"), &volumes, &[class("ebs", "ebs.csi.aws.com")]), Decision::Wait(w) if w.contains("external provisioner 'ebs.csi.aws.com'"))
        );
        assert!(
            matches!(plan(&pvc("nope", "1Gi"), &volumes, &[]), Decision::Wait(w) if w.contains("\"nope\" not found"))
        );
    }
}
