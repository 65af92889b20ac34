//! Controllers of kube-controller-manager in a virtual cluster (`vkube up`), as kubectl
//! shows them: CronJobs (jobs at the scheduled times, Forbid keeps one at a time,
//! history limits prune, an every-minute schedule in a time zone runs at the minute;
//! kube-apiserver's validation of the schedule), TTL after finished, and a Deployment's
//! progress deadline.

mod common;
use common::*;
use std::time::Duration;

fn up() -> Vkube {
    start_up_in(tempfile::tempdir().expect("tempdir"), &[])
}

fn cronjob(name: &str, schedule: &str, extra: &str, run_seconds: u32) -> String {
    format!(
        r#"{{"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {{"name": "{name}"}},
          "spec": {{"schedule": "{schedule}"{extra}, "jobTemplate": {{"spec": {{"template": {{
            "metadata": {{"annotations": {{"vkube.dev/run-seconds": "{run_seconds}"}}}},
            "spec": {{"restartPolicy": "Never", "containers": [{{"name": "c", "image": "busybox"}}]}}}}}}}}}}}}"#
    )
}

/// The jobs of a CronJob: (name, active?) from `kubectl get jobs`.
fn jobs_of(vk: &Vkube, cronjob: &str) -> Vec<(String, bool)> {
    let out = vk.ok(&[
        "get",
        "jobs",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.metadata.ownerReferences[0].name} {.status.active}{\"\\n\"}{end}",
    ]);
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1) == Some(&cronjob)).then(|| (f[0].to_string(), f.get(2).is_some_and(|a| *a != "0")))
        })
        .collect()
}

fn events_of(vk: &Vkube, name: &str) -> String {
    vk.ok(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={name}"),
        "-o",
        "jsonpath={.items[*].reason}",
    ])
}

/// Job names carry the scheduled minute (as kube's do), so a time runs once and these
/// take up to two minutes: one CronJob whose job outlives the next minute (Forbid),
/// one that keeps no history, one suspended.
#[test]
fn forbid_runs_one_job_at_a_time_history_limits_prune_and_suspend_holds() {
    let vk = up();
    for (name, extra, run) in [
        ("forbid", r#", "concurrencyPolicy": "Forbid""#, 90),
        ("pruned", r#", "successfulJobsHistoryLimit": 0"#, 1),
        ("held", r#", "suspend": true"#, 1),
    ] {
        let (ok, _, err) = vk.apply(&["apply", "-f", "-"], &cronjob(name, "* * * * *", extra, run));
        assert!(ok, "{err}");
    }
    let first = retry(70, || jobs_of(&vk, "forbid").into_iter().next().map(|(n, _)| n));
    // Past the next minute: the first job still runs, so Forbid starts none.
    let minutes: i64 = first.rsplit('-').next().and_then(|m| m.parse().ok()).expect("NAME-MINUTES");
    let next_minute = std::time::UNIX_EPOCH + Duration::from_secs(((minutes + 1) * 60) as u64);
    while std::time::SystemTime::now() < next_minute + Duration::from_secs(8) {
        let jobs = jobs_of(&vk, "forbid");
        assert_eq!(jobs.len(), 1, "Forbid let a second job start: {jobs:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    vk.wait_for(
        &["get", "events", "--field-selector", "involvedObject.name=forbid", "-o", "jsonpath={.items[*].reason}"],
        10,
        |o| o.contains("JobAlreadyActive"),
    );
    assert!(events_of(&vk, "forbid").contains("SuccessfulCreate"));
    // No history kept: each finished job is deleted.
    assert!(events_of(&vk, "pruned").contains("SuccessfulDelete"), "{}", events_of(&vk, "pruned"));
    assert!(jobs_of(&vk, "pruned").iter().all(|(_, active)| *active), "{:?}", jobs_of(&vk, "pruned"));
    let status =
        vk.ok(&["get", "cronjob", "pruned", "-o", "jsonpath={.status.lastScheduleTime} {.status.lastSuccessfulTime}"]);
    assert_eq!(status.split_whitespace().count(), 2, "last schedule and success recorded: {status}");
    assert!(jobs_of(&vk, "held").is_empty(), "a suspended CronJob made a job");
}

#[test]
fn an_every_minute_schedule_in_a_time_zone_runs_at_the_minute() {
    let vk = up();
    let (ok, _, err) =
        vk.apply(&["apply", "-f", "-"], &cronjob("minutely", "* * * * *", r#", "timeZone": "Europe/Berlin""#, 1));
    assert!(ok, "{err}");
    // Defaults as kube-apiserver's.
    let spec = vk.ok(&[
        "get",
        "cronjob",
        "minutely",
        "-o",
        "jsonpath={.spec.concurrencyPolicy} {.spec.successfulJobsHistoryLimit} {.spec.failedJobsHistoryLimit} {.spec.suspend}",
    ]);
    assert_eq!(spec, "Allow 3 1 false");
    let job = retry(70, || jobs_of(&vk, "minutely").into_iter().next().map(|(n, _)| n));
    let stamp = vk.ok(&[
        "get",
        "job",
        &job,
        "-o",
        "jsonpath={.metadata.annotations.batch\\.kubernetes\\.io/cronjob-scheduled-timestamp}",
    ]);
    // On the minute, written in the zone (Berlin is UTC+1 or +2).
    assert!(stamp.ends_with(":00+01:00") || stamp.ends_with(":00+02:00"), "{stamp}");
    let minutes: i64 = job.rsplit('-').next().and_then(|m| m.parse().ok()).expect("NAME-MINUTES");
    let unix = vk.ok(&["get", "job", &job, "-o", "jsonpath={.metadata.creationTimestamp}"]);
    assert!(!unix.is_empty() && minutes > 29_000_000, "{job} {unix}");
    vk.wait_for(&["get", "job", &job, "-o", "jsonpath={.status.succeeded}"], 30, |o| o == "1");
}

#[test]
fn schedules_are_validated_as_kube_apiserver_does() {
    let vk = up();
    for (schedule, message) in [
        ("bad", "spec.schedule: Invalid value: \"bad\": expected exactly 5 fields, found 1: [bad]"),
        ("61 * * * *", "spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61"),
        (
            "CRON_TZ=UTC * * * * *",
            "spec.schedule: Invalid value: \"CRON_TZ=UTC * * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
        ),
    ] {
        let (ok, _, err) =
            vk.kubectl(&["create", "cronjob", "x", "--image=busybox", &format!("--schedule={schedule}")]);
        assert!(!ok && err.contains(message), "{schedule}: {err}");
    }
    let (ok, _, err) =
        vk.apply(&["create", "-f", "-"], &cronjob("zoned", "* * * * *", r#", "timeZone": "Mars/Base""#, 1));
    assert!(!ok && err.contains("spec.timeZone: Invalid value: \"Mars/Base\": unknown time zone Mars/Base"), "{err}");
    let (ok, _, _) = vk.kubectl(&["get", "cronjob", "x"]);
    assert!(!ok, "a refused CronJob was stored");
}

#[test]
fn finished_jobs_go_after_their_ttl_with_their_pods() {
    let vk = up();
    let job = r#"{"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "brief"},
        "spec": {"ttlSecondsAfterFinished": 2, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox"}]}}}}"#;
    let (ok, _, err) = vk.apply(&["apply", "-f", "-"], job);
    assert!(ok, "{err}");
    vk.wait_for(&["get", "job", "brief", "-o", "jsonpath={.status.succeeded}"], 30, |o| o == "1");
    // Still there right after it finished: the TTL counts from then.
    assert!(vk.kubectl(&["get", "job", "brief"]).0, "deleted before its TTL");
    vk.wait_for(&["get", "jobs", "-o", "name"], 20, |o| !o.contains("job.batch/brief"));
    vk.wait_for(&["get", "pods", "-l", "job-name=brief", "-o", "name"], 20, |o| o.trim().is_empty());
}

#[test]
fn a_deployment_that_cannot_progress_says_so_after_its_deadline() {
    let vk = up();
    let stuck = r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "stuck"},
        "spec": {"replicas": 1, "progressDeadlineSeconds": 3, "selector": {"matchLabels": {"app": "stuck"}},
          "template": {"metadata": {"labels": {"app": "stuck"}}, "spec": {"nodeSelector": {"no-such": "node"},
            "containers": [{"name": "c", "image": "nginx"}]}}}}"#;
    let (ok, _, err) = vk.apply(&["apply", "-f", "-"], stuck);
    assert!(ok, "{err}");
    let (ok, out, err) = vk.kubectl(&["rollout", "status", "deploy/stuck", "--timeout=40s"]);
    assert!(!ok && err.contains("deployment \"stuck\" exceeded its progress deadline"), "{out}{err}");
    let cond = vk.ok(&[
        "get",
        "deploy",
        "stuck",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Progressing\")].status} {.status.conditions[?(@.type==\"Progressing\")].reason}",
    ]);
    assert_eq!(cond, "False ProgressDeadlineExceeded");
    // One that can progress completes, and says so.
    vk.ok(&["create", "deployment", "fine", "--image=nginx"]);
    vk.ok(&["rollout", "status", "deploy/fine", "--timeout=40s"]);
    let cond =
        vk.ok(&["get", "deploy", "fine", "-o", "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}"]);
    assert_eq!(cond, "NewReplicaSetAvailable");
}

fn web_with_usage(cpu_usage: &str) -> String {
    format!(
        r#"{{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {{"name": "web"}},
          "spec": {{"replicas": 1, "selector": {{"matchLabels": {{"app": "web"}}}},
            "template": {{"metadata": {{"labels": {{"app": "web"}}, "annotations": {{"vkube.dev/cpu-usage": "{cpu_usage}"}}}},
              "spec": {{"containers": [{{"name": "web", "image": "nginx", "resources": {{"requests": {{"cpu": "100m"}}}}}}]}}}}}}}}"#
    )
}

/// An HPA scales a deployment up under (simulated) load and down when it goes, from
/// `kubectl top`'s metrics, within its bounds; `kubectl get hpa` shows the targets.
#[test]
fn a_horizontal_pod_autoscaler_follows_the_load_up_and_down() {
    let vk = up();
    let (ok, _, err) = vk.apply(&["apply", "-f", "-"], &web_with_usage("200m"));
    assert!(ok, "{err}");
    vk.ok(&["rollout", "status", "deploy/web", "--timeout=40s"]);
    let hpa = r#"{"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5,
          "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}],
          "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}}}"#;
    let (ok, _, err) = vk.apply(&["apply", "-f", "-"], hpa);
    assert!(ok, "{err}");
    // 200% of the request against 50%: up, as far as maxReplicas allows.
    vk.wait_for(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"], 60, |o| o == "5");
    let shown =
        vk.wait_for(&["get", "hpa", "web", "--no-headers"], 30, |o| o.contains("cpu: 200%/50%") && o.contains(" 5 "));
    assert!(shown.contains("Deployment/web"), "{shown}");
    let events = vk.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=web,involvedObject.kind=HorizontalPodAutoscaler",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(
        events.contains("New size: ")
            && events.contains("cpu resource utilization (percentage of request) above target"),
        "{events}"
    );
    // The load goes: down to minReplicas.
    let (ok, _, err) = vk.apply(&["apply", "-f", "-"], &web_with_usage("10m"));
    assert!(ok, "{err}");
    vk.wait_for(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"], 90, |o| o == "1");
    let limited =
        vk.ok(&["get", "hpa", "web", "-o", "jsonpath={.status.conditions[?(@.type==\"ScalingActive\")].status}"]);
    assert_eq!(limited, "True");
}

#[test]
fn autoscalers_are_validated_as_kube_apiserver_does() {
    let vk = up();
    vk.ok(&["create", "deployment", "web", "--image=nginx"]);
    let (ok, _, err) = vk.kubectl(&["autoscale", "deployment", "web", "--min=3", "--max=2"]);
    assert!(!ok, "{err}");
    vk.ok(&["autoscale", "deployment", "web", "--cpu-percent=50", "--min=1", "--max=5"]);
    let spec = vk.ok(&[
        "get",
        "hpa",
        "web",
        "-o",
        "jsonpath={.spec.minReplicas} {.spec.maxReplicas} {.spec.metrics[0].resource.target.averageUtilization}",
    ]);
    assert_eq!(spec, "1 5 50");
    let bad = r#"{"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "bad"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "minReplicas": 3, "maxReplicas": 2}}"#;
    let (ok, _, err) = vk.apply(&["create", "-f", "-"], bad);
    assert!(
        !ok && err.contains("spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`"),
        "{err}"
    );
}

/// Claims go Bound: a claim with no class gets the simulated host's default class
/// `standard` and a volume made for it (gone with the claim); a claim of a class with
/// volumes made by hand gets the smallest one that fits, `Released` after (Retain).
#[test]
fn claims_are_bound_to_provisioned_or_matching_volumes() {
    let vk = up();
    let claim = |name: &str, class: Option<&str>, size: &str| {
        let class = class.map(|c| format!(r#", "storageClassName": "{c}""#)).unwrap_or_default();
        format!(
            r#"{{"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {{"name": "{name}"}},
              "spec": {{"accessModes": ["ReadWriteOnce"], "resources": {{"requests": {{"storage": "{size}"}}}}{class}}}}}"#
        )
    };
    let (ok, _, err) = vk.apply(&["apply", "-f", "-"], &claim("data", None, "1Gi"));
    assert!(ok, "{err}");
    vk.wait_for(&["get", "pvc", "data", "-o", "jsonpath={.status.phase}"], 30, |o| o == "Bound");
    let host = |args: &[&str]| vk.host_ok(args);
    let pv = host(&[
        "get",
        "pvc",
        "-n",
        "vkube-vc",
        "data-x-default-x-vc",
        "-o",
        "jsonpath={.spec.storageClassName} {.spec.volumeName}",
    ]);
    let (class, volume) = pv.split_once(' ').expect("class and volume");
    assert_eq!(class, "standard");
    assert_eq!(host(&["get", "pv", volume, "-o", "jsonpath={.status.phase} {.spec.capacity.storage}"]), "Bound 1Gi");
    vk.ok(&["delete", "pvc", "data"]);
    let gone = || !host(&["get", "pv", "-o", "name"]).contains(volume);
    retry(30, || gone().then_some(()));

    // Volumes made by hand on the host, of class `manual` (no provisioner): the smallest that fits.
    for (name, size) in [("small", "2Gi"), ("big", "10Gi"), ("tiny", "500Mi")] {
        let pv = format!(
            r#"{{"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {{"name": "{name}"}},
              "spec": {{"storageClassName": "manual", "capacity": {{"storage": "{size}"}}, "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain", "hostPath": {{"path": "/tmp/{name}"}}}}}}"#
        );
        let out = std::process::Command::new("kubectl")
            .args(["create", "-f", "-"])
            .env("KUBECONFIG", vk.host_kubeconfig())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().expect("stdin").write_all(pv.as_bytes())?;
                c.wait()
            })
            .expect("kubectl");
        assert!(out.success());
    }
    let (ok, _, err) = vk.apply(&["apply", "-f", "-"], &claim("picked", Some("manual"), "1Gi"));
    assert!(ok, "{err}");
    vk.wait_for(&["get", "pvc", "picked", "-o", "jsonpath={.status.phase}"], 30, |o| o == "Bound");
    let chosen = host(&["get", "pvc", "-n", "vkube-vc", "picked-x-default-x-vc", "-o", "jsonpath={.spec.volumeName}"]);
    assert_eq!(chosen, "small");
    vk.ok(&["delete", "pvc", "picked"]);
    retry(30, || (host(&["get", "pv", "small", "-o", "jsonpath={.status.phase}"]) == "Released").then_some(()));
}

/// Pod garbage collection: a pod bound to a node that does not exist is deleted once the
/// node has been gone for kube's 40 s quarantine (not at once), as kube-controller-manager's
/// pod-garbage-collector does; a pod on a live node stays.
#[test]
fn pods_of_a_node_that_is_gone_are_collected() {
    let vk = common::start_host_in(tempfile::tempdir().expect("tempdir"), 1);
    let pod = |name: &str, node: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},"spec":{{"nodeName":"{node}","containers":[{{"name":"c","image":"busybox"}}]}}}}"#
        )
    };
    let (ok, _, err) = vk.apply(&["create", "-f", "-"], &pod("stranded", "ghost"));
    assert!(ok, "{err}");
    let (ok, _, err) = vk.apply(&["create", "-f", "-"], &pod("kept", "node-1"));
    assert!(ok, "{err}");
    let created = std::time::Instant::now();
    vk.wait_for(&["get", "pods", "-o", "name"], 120, |out| !out.contains("pod/stranded"));
    assert!(created.elapsed() >= std::time::Duration::from_secs(35), "deleted before the quarantine");
    assert_eq!(vk.ok(&["get", "pod", "kept", "-o", "name"]).trim(), "pod/kept");
}

/// `minReadySeconds`: a ready pod counts as available only that long after it became
/// ready — in the ReplicaSet's and the Deployment's status, and for a rolling update,
/// which keeps the old pod until the new one is available (kube's `IsPodAvailable`).
#[test]
fn pods_become_available_min_ready_seconds_after_ready() {
    let vk = common::start_host_in(tempfile::tempdir().expect("tempdir"), 1);
    let deployment = |image: &str| {
        format!(
            r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"slow"}},"spec":{{"replicas":1,"minReadySeconds":8,
            "strategy":{{"rollingUpdate":{{"maxSurge":1,"maxUnavailable":0}}}},
            "selector":{{"matchLabels":{{"app":"slow"}}}},"template":{{"metadata":{{"labels":{{"app":"slow"}}}},
            "spec":{{"containers":[{{"name":"c","image":"{image}"}}]}}}}}}}}"#
        )
    };
    let (ok, _, err) = vk.apply(&["apply", "-f", "-"], &deployment("busybox:1"));
    assert!(ok, "{err}");
    let status = "jsonpath={.status.readyReplicas}/{.status.availableReplicas}";
    vk.wait_for(&["get", "deployment", "slow", "-o", status], 30, |s| s.starts_with("1/"));
    let ready_at = std::time::Instant::now();
    let now = vk.ok(&["get", "deployment", "slow", "-o", status]);
    assert!(now == "1/" || now == "1/0", "available at once: {now}");
    vk.wait_for(&["get", "deployment", "slow", "-o", status], 30, |s| s == "1/1");
    assert!(ready_at.elapsed() >= Duration::from_secs(5), "available before minReadySeconds");
    // A rollout keeps the old pod until the new one has been ready that long.
    let (ok, _, err) = vk.apply(&["apply", "-f", "-"], &deployment("busybox:2"));
    assert!(ok, "{err}");
    vk.wait_for(&["get", "pods", "-l", "app=slow", "-o", "name"], 30, |s| s.lines().count() == 2);
    let both_at = std::time::Instant::now();
    vk.wait_for(&["get", "pods", "-l", "app=slow", "-o", "jsonpath={.items[*].spec.containers[0].image}"], 60, |s| {
        s == "busybox:2"
    });
    assert!(both_at.elapsed() >= Duration::from_secs(5), "the old pod went before the new one was available");
}

/// EndpointSlice mirroring: the Endpoints of a Service without a selector appear as an
/// EndpointSlice (kube's managed-by label, the service name), follow an update in
/// place, and go with the Endpoints; Endpoints marked skip-mirror are left alone.
#[test]
fn endpoints_of_a_service_without_selector_are_mirrored_into_slices() {
    let vk = common::start_host_in(tempfile::tempdir().expect("tempdir"), 1);
    let service = |name: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"{name}"}},"spec":{{"ports":[{{"name":"example","port":80}}]}}}}"#
        )
    };
    let endpoints = |name: &str, ip: &str, extra: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"Endpoints","metadata":{{"name":"{name}"{extra}}},"subsets":[{{"ports":[{{"port":80}}],"addresses":[{{"ip":"{ip}"}}]}}]}}"#
        )
    };
    for manifest in [
        service("custom"),
        endpoints("custom", "10.1.2.3", ""),
        service("skipped"),
        endpoints("skipped", "10.1.2.9", r#","labels":{"endpointslice.kubernetes.io/skip-mirror":"true"}"#),
    ] {
        let (ok, _, err) = vk.apply(&["apply", "-f", "-"], &manifest);
        assert!(ok, "{err}");
    }
    let of = |svc: &str| {
        vec![
            "get".to_string(),
            "endpointslices".into(),
            "-l".into(),
            format!("kubernetes.io/service-name={svc}"),
            "-o".into(),
            "jsonpath={range .items[*]}{.metadata.labels.endpointslice\\.kubernetes\\.io/managed-by} {.endpoints[*].addresses[*]} {.ports[*].port};{end}".into(),
        ]
    };
    let args = of("custom");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    vk.wait_for(&args, 30, |s| s == "endpointslicemirroring-controller.k8s.io 10.1.2.3 80;");
    let (ok, _, err) = vk.apply(&["apply", "-f", "-"], &endpoints("custom", "10.2.3.4", ""));
    assert!(ok, "{err}");
    vk.wait_for(&args, 30, |s| s == "endpointslicemirroring-controller.k8s.io 10.2.3.4 80;");
    let skipped = of("skipped");
    let skipped: Vec<&str> = skipped.iter().map(String::as_str).collect();
    assert_eq!(vk.ok(&skipped), "", "skip-mirror Endpoints were mirrored");
    vk.ok(&["delete", "endpoints", "custom"]);
    vk.wait_for(&args, 30, |s| s.is_empty());
}
