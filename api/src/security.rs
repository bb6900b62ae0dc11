//! What a container's processes may do: Kubernetes' `securityContext` (the user and group they
//! run as, whether root is refused, a read-only root file system, privilege escalation,
//! capabilities, seccomp), in Knative's shape and in the shape a revision keeps.
//!
//! Knative allows a subset of Kubernetes' fields; Rouse allows the same subset, refuses the
//! rest by name, and lets a container add back only capabilities a plain `docker run` has:
//! anything beyond Docker's default set (`SYS_ADMIN`, `NET_ADMIN`, ...) gives a container power
//! over the host it shares with every other service.

use serde::{Deserialize, Serialize};

use crate::ValidationError;
use crate::template::CONTAINER;

/// Capabilities a container may add: Docker's default set, which `[instances]
/// drop-capabilities` and a revision's `drop` take from.
pub const ADDABLE_CAPABILITIES: [&str; 14] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Every Linux capability, as Kubernetes spells them (no `CAP_`), for `drop`.
const CAPABILITIES: [&str; 41] = [
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYSLOG",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "WAKE_ALARM",
];

/// `ALL`, in `drop`: every capability.
pub const ALL: &str = "ALL";

/// The only seccomp profile: the engine's default, which Docker applies to every container.
pub const RUNTIME_DEFAULT: &str = "RuntimeDefault";

/// What a revision's container may do, beyond the user id (the template's `user`). Every
/// field at its default means the daemon's `[instances]` settings alone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerSecurity {
    /// The group id the command runs as (`runAsGroup`, `--group`); needs a user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<u32>,
    /// Refuse to run as root (`runAsNonRoot`): the user id, or else the image's `USER`,
    /// must be a number other than 0.
    #[serde(default, skip_serializing_if = "is_false")]
    pub non_root: bool,
    /// The image's file system is read-only (`readOnlyRootFilesystem`); mounts stay as they are.
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only_root: bool,
    /// `allowPrivilegeEscalation: false`: no process gains privileges (Linux's `no_new_privs`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_privilege_escalation: bool,
    /// Capabilities added back, from [`ADDABLE_CAPABILITIES`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_capabilities: Vec<String>,
    /// Capabilities taken away, or `ALL`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop_capabilities: Vec<String>,
    /// `seccompProfile: {type: RuntimeDefault}` was asked for (Docker applies it anyway).
    #[serde(default, skip_serializing_if = "is_false")]
    pub seccomp_runtime_default: bool,
}

fn is_false(b: &bool) -> bool {
    !b
}

impl ContainerSecurity {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// kn's `--security-context strict`: no root, no privilege escalation, no capabilities,
    /// the runtime's seccomp profile.
    pub fn strict() -> Self {
        Self {
            non_root: true,
            no_privilege_escalation: true,
            drop_capabilities: vec![ALL.to_string()],
            seccomp_runtime_default: true,
            ..Self::default()
        }
    }

    /// Checks names and combinations; `user` is the template's user id.
    pub fn validate(&self, user: Option<u32>) -> Result<(), ValidationError> {
        let field = |name: &str| format!("{CONTAINER}.securityContext.{name}");
        if self.non_root && user == Some(0) {
            return Err(ValidationError::new(
                field("runAsUser"),
                0,
                "is root, and runAsNonRoot is true; pick a non-zero user id or drop runAsNonRoot",
            ));
        }
        if self.group.is_some() && user.is_none() {
            return Err(ValidationError::new(
                field("runAsGroup"),
                self.group.unwrap_or_default(),
                "needs runAsUser (--user) as well: Docker sets a group only with a user",
            ));
        }
        for (i, name) in self.add_capabilities.iter().enumerate() {
            if name != ALL {
                check_name(&field(&format!("capabilities.add[{i}]")), name)?;
            }
            if !ADDABLE_CAPABILITIES.contains(&name.as_str()) {
                return Err(ValidationError::new(
                    field(&format!("capabilities.add[{i}]")),
                    name,
                    format!(
                        "is not one a container may add: it would give power over the host every \
                         service shares; addable are Docker's defaults: {}",
                        ADDABLE_CAPABILITIES.join(", ")
                    ),
                ));
            }
        }
        for (i, name) in self.drop_capabilities.iter().enumerate() {
            if name != ALL {
                check_name(&field(&format!("capabilities.drop[{i}]")), name)?;
            }
        }
        Ok(())
    }

    /// The Knative `securityContext` of this and `user`, `None` when it says nothing.
    pub fn to_knative(&self, user: Option<u32>) -> Option<SecurityContext> {
        let context = SecurityContext {
            run_as_user: user,
            run_as_group: self.group,
            run_as_non_root: self.non_root.then_some(true),
            read_only_root_filesystem: self.read_only_root.then_some(true),
            allow_privilege_escalation: self.no_privilege_escalation.then_some(false),
            privileged: None,
            capabilities: (!self.add_capabilities.is_empty() || !self.drop_capabilities.is_empty()).then(|| {
                Capabilities {
                    add: self.add_capabilities.clone(),
                    drop: self.drop_capabilities.clone(),
                }
            }),
            seccomp_profile: self.seccomp_runtime_default.then(|| SeccompProfile {
                kind: RUNTIME_DEFAULT.to_string(),
                localhost_profile: None,
            }),
        };
        (context != SecurityContext::default()).then_some(context)
    }
}

fn check_name(field: &str, name: &str) -> Result<(), ValidationError> {
    if let Some(bare) = name.strip_prefix("CAP_") {
        return Err(ValidationError::new(
            field,
            name,
            format!("write it without CAP_, as Kubernetes does: {bare}"),
        ));
    }
    if !CAPABILITIES.contains(&name) {
        return Err(ValidationError::new(
            field,
            name,
            "is not a Linux capability (names are upper case, e.g. NET_BIND_SERVICE)",
        ));
    }
    Ok(())
}

/// Knative's `securityContext` of a container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecurityContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_root_filesystem: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_privilege_escalation: Option<bool>,
    /// Only `false`: Knative refuses privileged containers, and so does Rouse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_profile: Option<SeccompProfile>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeccompProfile {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub localhost_profile: Option<String>,
}

impl SecurityContext {
    /// The user id and what a revision keeps of the rest; refuses what Rouse cannot do.
    pub fn into_template(self) -> Result<(Option<u32>, ContainerSecurity), ValidationError> {
        let field = |name: &str| format!("{CONTAINER}.securityContext.{name}");
        if self.privileged == Some(true) {
            return Err(ValidationError::new(
                field("privileged"),
                true,
                "privileged containers own the host; Rouse (as Knative) runs none. Add the one \
                 capability needed under capabilities.add instead",
            ));
        }
        if self.allow_privilege_escalation == Some(true) {
            return Err(ValidationError::new(
                field("allowPrivilegeEscalation"),
                true,
                "is set by the daemon ([instances] no-new-privileges in rouse.toml), not by a \
                 service; leave it out, or write false",
            ));
        }
        let seccomp_runtime_default = match self.seccomp_profile {
            None => false,
            Some(profile) if profile.kind == RUNTIME_DEFAULT && profile.localhost_profile.is_none() => true,
            Some(profile) => {
                return Err(ValidationError::new(
                    field("seccompProfile.type"),
                    profile.kind,
                    "only RuntimeDefault (the engine's default profile) is supported",
                ));
            }
        };
        let capabilities = self.capabilities.unwrap_or_default();
        let security = ContainerSecurity {
            group: self.run_as_group,
            non_root: self.run_as_non_root.unwrap_or(false),
            read_only_root: self.read_only_root_filesystem.unwrap_or(false),
            no_privilege_escalation: self.allow_privilege_escalation == Some(false),
            add_capabilities: capabilities.add,
            drop_capabilities: capabilities.drop,
            seccomp_runtime_default,
        };
        security.validate(self.run_as_user)?;
        Ok((self.run_as_user, security))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(yaml: &str) -> Result<(Option<u32>, ContainerSecurity), ValidationError> {
        serde_norway::from_str::<SecurityContext>(yaml).unwrap().into_template()
    }

    #[test]
    fn every_allowed_field_is_kept_and_printed_back_the_same() {
        let yaml = "runAsUser: 1000\nrunAsGroup: 2000\nrunAsNonRoot: true\nreadOnlyRootFilesystem: true\n\
                    allowPrivilegeEscalation: false\ncapabilities:\n  add: [NET_BIND_SERVICE]\n  drop: [ALL]\n\
                    seccompProfile:\n  type: RuntimeDefault\n";
        let (user, security) = context(yaml).unwrap();
        assert_eq!(user, Some(1000));
        assert_eq!(security.group, Some(2000));
        assert!(security.non_root && security.read_only_root && security.no_privilege_escalation);
        assert_eq!(security.add_capabilities, ["NET_BIND_SERVICE"]);
        let back = security.to_knative(user).unwrap();
        assert_eq!(back, serde_norway::from_str::<SecurityContext>(yaml).unwrap());
        assert_eq!(ContainerSecurity::default().to_knative(None), None);
    }

    #[test]
    fn what_rouse_cannot_do_is_refused_by_name() {
        for (yaml, field, hint) in [
            ("privileged: true", "securityContext.privileged", "capabilities.add"),
            (
                "allowPrivilegeEscalation: true",
                "allowPrivilegeEscalation",
                "no-new-privileges",
            ),
            (
                "seccompProfile: {type: Unconfined}",
                "seccompProfile.type",
                "RuntimeDefault",
            ),
            (
                "capabilities: {add: [SYS_ADMIN]}",
                "capabilities.add[0]",
                "NET_BIND_SERVICE",
            ),
            ("capabilities: {add: [ALL]}", "capabilities.add[0]", "may add"),
            (
                "capabilities: {drop: [CAP_NET_RAW]}",
                "capabilities.drop[0]",
                "Kubernetes does: NET_RAW",
            ),
            ("capabilities: {drop: [net_raw]}", "capabilities.drop[0]", "upper case"),
            ("runAsUser: 0\nrunAsNonRoot: true", "runAsUser", "non-zero"),
            ("runAsGroup: 10", "runAsGroup", "runAsUser"),
        ] {
            let e = context(yaml).unwrap_err();
            assert!(e.field.ends_with(field), "{yaml}: {e}");
            assert!(e.to_string().contains(hint), "{yaml}: {e}");
        }
        assert!(serde_norway::from_str::<SecurityContext>("seLinuxOptions: {}").is_err());
        // Dropping is always allowed, whatever the capability.
        assert!(context("capabilities: {drop: [SYS_ADMIN, NET_RAW]}").is_ok());
        assert!(context("privileged: false\nallowPrivilegeEscalation: false").is_ok());
    }

    #[test]
    fn strict_is_kns_strict() {
        let strict = ContainerSecurity::strict().to_knative(None).unwrap();
        assert_eq!(strict.run_as_non_root, Some(true));
        assert_eq!(strict.allow_privilege_escalation, Some(false));
        assert_eq!(strict.capabilities.unwrap().drop, ["ALL"]);
        assert_eq!(strict.seccomp_profile.unwrap().kind, "RuntimeDefault");
    }
}
