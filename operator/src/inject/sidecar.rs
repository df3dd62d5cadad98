//! The injected objects: the sidecar container (a native sidecar: an init container with
//! `restartPolicy: Always`, so it starts before the app and stops after it) and its two volumes.

use super::{
    ADMIN_PORT, ADMIN_PORT_NAME, InjectConfig, PROXY_PORT_NAME, SIDECAR_NAME, STATE_DIR,
    STATE_VOLUME, TOKEN_DIR, TOKEN_VOLUME, decide::Ports,
};
use k8s_openapi::{
    api::core::v1::{
        Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
        HTTPGetAction, ObjectFieldSelector, Probe, ProjectedVolumeSource, ResourceRequirements,
        SeccompProfile, SecurityContext, ServiceAccountTokenProjection, Volume, VolumeMount,
        VolumeProjection,
    },
    apimachinery::pkg::{api::resource::Quantity, util::intstr::IntOrString},
};
use std::collections::BTreeMap;

/// The user and group the sidecar runs as (distroless `nonroot`).
const NONROOT: i64 = 65532;
/// The projected token's lifetime; the kubelet rotates it at 80 %.
const TOKEN_SECONDS: i64 = 3600;

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(ADMIN_PORT.into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

fn port(name: &str, number: u16) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: number.into(),
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

/// The sidecar container for a pod whose ports are `ports`.
pub(super) fn container(cfg: &InjectConfig, ports: &Ports) -> Container {
    let args = [
        "run",
        "--operator",
        &cfg.operator_url,
        "--token-file",
        &format!("{TOKEN_DIR}/token"),
        "--state-dir",
        STATE_DIR,
        "--listen",
        &format!("0.0.0.0:{}", ports.proxy),
        "--admin-listen",
        &format!("0.0.0.0:{ADMIN_PORT}"),
        "--upstream",
        &ports.upstream_url(),
        "--log-format",
        "json",
    ];
    let mut env = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        // The addresses the bypass check tries (the sidecar's `bypass`).
        field_env("POD_IPS", "status.podIPs"),
    ];
    if let Some(pem) = &cfg.operator_ca {
        env.push(EnvVar {
            name: "MCP_WARDEN_OPERATOR_CA".into(),
            value: Some(pem.clone()),
            ..EnvVar::default()
        });
    }
    let quantity = |q: &String| Quantity(q.clone());
    Container {
        name: SIDECAR_NAME.into(),
        image: Some(cfg.image.clone()),
        image_pull_policy: Some(cfg.image_pull_policy.clone()),
        restart_policy: Some("Always".into()),
        args: Some(args.into_iter().map(str::to_owned).collect()),
        env: Some(env),
        ports: Some(vec![
            port(PROXY_PORT_NAME, ports.proxy),
            port(ADMIN_PORT_NAME, ADMIN_PORT),
        ]),
        startup_probe: Some(probe("/ready", 1, 120)),
        readiness_probe: Some(probe("/ready", 5, 3)),
        liveness_probe: Some(probe("/live", 10, 3)),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), quantity(&cfg.cpu_request)),
                ("memory".to_owned(), quantity(&cfg.memory_request)),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_owned(),
                quantity(&cfg.memory_limit),
            )])),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(NONROOT),
            run_as_group: Some(NONROOT),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: STATE_VOLUME.into(),
                mount_path: STATE_DIR.into(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: TOKEN_VOLUME.into(),
                mount_path: TOKEN_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    }
}

/// The state emptyDir and the projected ServiceAccount token for the operator's audience.
pub(super) fn volumes(cfg: &InjectConfig) -> [Volume; 2] {
    [
        Volume {
            name: STATE_VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
        Volume {
            name: TOKEN_VOLUME.into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        audience: Some(cfg.audience.clone()),
                        expiration_seconds: Some(TOKEN_SECONDS),
                        path: "token".into(),
                    }),
                    ..VolumeProjection::default()
                }]),
                ..ProjectedVolumeSource::default()
            }),
            ..Volume::default()
        },
    ]
}
