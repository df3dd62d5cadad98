//! Every `Decision` variant, through the public API, on small whole objects.

mod support;

use mcp_warden_crds::*;
use mcp_warden_policy::{Call, Decision, Kind, ObjectRef, decide};
use support::*;

const NOW: &str = "2026-11-24T12:00:00Z";

fn payments() -> McpTool {
    mk_tool(
        "payments",
        "payments-api",
        &[
            ("get_balance", &["payments:read"]),
            ("refund_*", &["payments:write"]),
            ("refund_card", &["payments:write", "payments:refund"]),
        ],
    )
}

fn client_ref(name: &str) -> ObjectRef {
    ObjectRef::new(Kind::McpClient, "agents", name)
}

fn policy_ref(name: &str) -> ObjectRef {
    ObjectRef::new(Kind::McpPolicy, "payments", name)
}

fn tool_ref() -> ObjectRef {
    ObjectRef::new(Kind::McpTool, "payments", "payments-api")
}

fn decide_for(
    rules: &mcp_warden_policy::RuleSet,
    client: &str,
    scopes: &[&str],
    tool: &str,
) -> Decision {
    decide(rules, &principal(client, scopes), Call::Tool(tool), ts(NOW))
}

#[test]
fn allow_names_the_granting_policy() {
    let rules = rules(
        vec![payments()],
        vec![mk_client("agents", "bot")],
        vec![mk_policy(
            "payments",
            "read",
            &["agents/bot"],
            "payments-api",
            &["get_*"],
        )],
    );
    assert_eq!(
        decide_for(&rules, "bot", &["payments:read"], "get_balance"),
        Decision::Allow {
            client: client_ref("bot"),
            policy: Some(policy_ref("read")),
            audit: false
        }
    );
    assert_eq!(
        decide(&rules, &principal("bot", &[]), Call::Session, ts(NOW)),
        Decision::Allow {
            client: client_ref("bot"),
            policy: None,
            audit: false
        }
    );
}

#[test]
fn unknown_clients_are_denied() {
    let rules = rules(vec![payments()], vec![mk_client("agents", "bot")], vec![]);
    let unknown = |p: &mcp_warden_policy::Principal| decide(&rules, p, Call::Session, ts(NOW));
    let mut p = principal("stranger", &[]);
    assert!(matches!(unknown(&p), Decision::DenyUnknownClient { tool, .. } if tool == tool_ref()));
    p.client_id = None;
    assert!(matches!(unknown(&p), Decision::DenyUnknownClient { .. }));
    let mut p = principal("bot", &[]);
    p.issuer = "https://evil.example.com".into();
    assert!(
        matches!(unknown(&p), Decision::DenyUnknownClient { .. }),
        "right client id, wrong issuer"
    );
}

#[test]
fn subject_constraint_and_ambiguous_identities() {
    let mut pinned = mk_client("agents", "bot");
    pinned.spec.identity.subject = Some("sub-other".into());
    let rules1 = rules(vec![payments()], vec![pinned], vec![]);
    assert!(matches!(
        decide(&rules1, &principal("bot", &[]), Call::Session, ts(NOW)),
        Decision::DenyUnknownClient { .. }
    ));

    let twin = mk_client("other-ns", "bot"); // same issuer + clientId
    let rules2 = rules(
        vec![payments()],
        vec![mk_client("agents", "bot"), twin],
        vec![],
    );
    assert!(matches!(
        decide(&rules2, &principal("bot", &[]), Call::Session, ts(NOW)),
        Decision::DenyUnknownClient { .. }
    ));
    assert_eq!(rules2.problems.len(), 2, "{:?}", rules2.problems);
    assert!(
        rules2
            .problems
            .iter()
            .all(|p| p.reason == "AmbiguousIdentity")
    );
}

#[test]
fn suspended_expired_revoked_and_overdue_at_their_boundaries() {
    let base = || {
        let mut c = mk_client("agents", "bot");
        c.metadata.creation_timestamp = Some(Time(ts("2026-01-01T00:00:00Z")));
        c
    };
    let policy = mk_policy("payments", "read", &["agents/bot"], "payments-api", &["*"]);
    let at = |c: McpClient, now: &str, iat: Option<&str>| {
        let rules = rules(vec![payments()], vec![c], vec![policy.clone()]);
        let mut p = principal("bot", &["payments:read"]);
        p.issued_at = iat.map(ts);
        decide(&rules, &p, Call::Tool("get_balance"), ts(now))
    };

    let mut c = base();
    c.spec.suspended = true;
    c.spec.suspension_reason = Some("leaked key".into());
    assert_eq!(
        at(c, NOW, Some(NOW)),
        Decision::DenySuspended {
            client: client_ref("bot"),
            reason: Some("leaked key".into())
        }
    );

    let mut c = base();
    c.spec.expires_at = Some(Time(ts("2026-11-24T12:00:00Z")));
    assert!(
        at(c.clone(), "2026-11-24T11:59:59.999Z", Some(NOW)).is_allowed(),
        "just before expiry"
    );
    assert_eq!(
        at(c, "2026-11-24T12:00:00Z", Some(NOW)),
        Decision::DenyExpired {
            client: client_ref("bot"),
            at: ts("2026-11-24T12:00:00Z")
        }
    );

    let mut c = base();
    c.spec.revoke_tokens_issued_before = Some(Time(ts("2026-11-24T10:00:00Z")));
    assert!(
        at(c.clone(), NOW, Some("2026-11-24T10:00:00Z")).is_allowed(),
        "issued at the cut-off"
    );
    let revoked = Decision::DenyTokenRevoked {
        client: client_ref("bot"),
        cutoff: ts("2026-11-24T10:00:00Z"),
    };
    assert_eq!(at(c.clone(), NOW, Some("2026-11-24T09:59:59Z")), revoked);
    assert_eq!(
        at(c, NOW, None),
        revoked,
        "a token without iat cannot prove it is new"
    );

    let mut c = base();
    c.spec.review = Some(ReviewSpec {
        interval_days: 30,
        last_reviewed_at: Some(Time(ts("2026-10-25T12:00:00Z"))),
        enforce: true,
        ..Default::default()
    });
    assert!(at(c.clone(), "2026-11-24T11:59:59Z", Some(NOW)).is_allowed());
    assert_eq!(
        at(c.clone(), "2026-11-24T12:00:00Z", Some(NOW)),
        Decision::DenyReviewOverdue {
            client: client_ref("bot"),
            due: ts("2026-11-24T12:00:00Z")
        }
    );
    c.spec.review.as_mut().unwrap().enforce = false;
    assert!(
        at(c.clone(), "2026-12-30T00:00:00Z", Some(NOW)).is_allowed(),
        "overdue but not enforced"
    );
    c.spec.review.as_mut().unwrap().last_reviewed_at = None; // due 30 days after creation
    let mut tool = payments();
    tool.spec.enforce_reviews = true;
    let rules = rules(vec![tool], vec![c], vec![policy.clone()]);
    let d = decide(
        &rules,
        &principal("bot", &["payments:read"]),
        Call::Session,
        ts("2026-01-31T00:00:00Z"),
    );
    assert_eq!(
        d,
        Decision::DenyReviewOverdue {
            client: client_ref("bot"),
            due: ts("2026-01-31T00:00:00Z")
        },
        "the McpTool enforces reviews"
    );
}

#[test]
fn not_granted_hidden_and_undeclared_tools() {
    let rules = rules(
        vec![payments()],
        vec![mk_client("agents", "bot")],
        vec![mk_policy(
            "payments",
            "read",
            &["agents/bot"],
            "payments-api",
            &["get_*", "undeclared"],
        )],
    );
    let denied = Decision::DenyNotGranted {
        client: client_ref("bot"),
        tool: tool_ref(),
    };
    assert_eq!(
        decide_for(&rules, "bot", &["payments:write"], "refund_card"),
        denied,
        "declared, not granted"
    );
    assert_eq!(
        decide_for(&rules, "bot", &[], "undeclared"),
        denied,
        "granted but undeclared, defaultAction Deny"
    );

    let mut open = payments();
    open.spec.default_action = DefaultAction::Allow;
    let rules = rules_with(open);
    assert!(
        decide_for(&rules, "bot", &[], "undeclared").is_allowed(),
        "defaultAction Allow"
    );

    fn rules_with(tool: McpTool) -> mcp_warden_policy::RuleSet {
        support::rules(
            vec![tool],
            vec![mk_client("agents", "bot")],
            vec![mk_policy(
                "payments",
                "read",
                &["agents/bot"],
                "payments-api",
                &["get_*", "undeclared"],
            )],
        )
    }
}

#[test]
fn insufficient_scope_reports_every_needed_scope() {
    let mut policy = mk_policy(
        "payments",
        "refunds",
        &["agents/bot"],
        "payments-api",
        &["refund_*"],
    );
    policy.spec.scopes = vec!["payments:mfa".into()];
    let rules = rules(
        vec![payments()],
        vec![mk_client("agents", "bot")],
        vec![policy],
    );
    // refund_card has an exact entry, which wins over refund_*.
    assert_eq!(
        decide_for(&rules, "bot", &["payments:write"], "refund_card"),
        Decision::DenyInsufficientScope {
            client: client_ref("bot"),
            policy: policy_ref("refunds"),
            needed: vec![
                "payments:mfa".into(),
                "payments:refund".into(),
                "payments:write".into()
            ],
        }
    );
    assert!(
        decide_for(
            &rules,
            "bot",
            &["payments:write", "payments:mfa"],
            "refund_other"
        )
        .is_allowed()
    );
}

#[test]
fn the_least_demanding_enforce_policy_is_reported_and_any_satisfied_one_allows() {
    let mut strict = mk_policy(
        "payments",
        "strict",
        &["agents/bot"],
        "payments-api",
        &["get_balance"],
    );
    strict.spec.scopes = vec!["a".into(), "b".into()];
    let mut lenient = mk_policy(
        "payments",
        "lenient",
        &["agents/bot"],
        "payments-api",
        &["get_*"],
    );
    lenient.spec.scopes = vec!["c".into()];
    let rules = rules(
        vec![payments()],
        vec![mk_client("agents", "bot")],
        vec![strict, lenient],
    );
    assert!(matches!(
        decide_for(&rules, "bot", &["payments:read"], "get_balance"),
        Decision::DenyInsufficientScope { policy, needed, .. } if policy == policy_ref("lenient") && needed == ["c", "payments:read"]
    ));
    assert!(matches!(
        decide_for(&rules, "bot", &["payments:read", "a", "b"], "get_balance"),
        Decision::Allow { policy: Some(p), .. } if p == policy_ref("strict")
    ));
}

#[test]
fn audit_mode_allows_and_records_what_it_would_have_decided() {
    let mut audit = mk_policy("payments", "trial", &["agents/bot"], "payments-api", &["*"]);
    audit.spec.mode = PolicyMode::Audit;
    let rules = rules(
        vec![payments()],
        vec![mk_client("agents", "bot")],
        vec![audit],
    );
    assert_eq!(
        decide_for(&rules, "bot", &["payments:read"], "get_balance"),
        Decision::Allow {
            client: client_ref("bot"),
            policy: Some(policy_ref("trial")),
            audit: true
        }
    );
    let d = decide_for(&rules, "bot", &[], "refund_card");
    assert!(d.is_allowed());
    assert_eq!(
        d,
        Decision::WouldDeny {
            client: client_ref("bot"),
            policy: policy_ref("trial"),
            would: Box::new(Decision::DenyInsufficientScope {
                client: client_ref("bot"),
                policy: policy_ref("trial"),
                needed: vec!["payments:refund".into(), "payments:write".into()],
            }),
        }
    );
    assert_eq!(d.reason(), "would_deny");
    assert_eq!(d.decided_by(), &policy_ref("trial"));
}

#[test]
fn enforce_denial_outranks_an_audit_grant() {
    let mut audit = mk_policy("payments", "trial", &["agents/bot"], "payments-api", &["*"]);
    audit.spec.mode = PolicyMode::Audit;
    let enforce = mk_policy(
        "payments",
        "read",
        &["agents/bot"],
        "payments-api",
        &["get_*"],
    );
    let rules = rules(
        vec![payments()],
        vec![mk_client("agents", "bot")],
        vec![audit, enforce],
    );
    assert!(matches!(
        decide_for(&rules, "bot", &[], "get_balance"),
        Decision::DenyInsufficientScope { .. }
    ));
}

#[test]
fn tools_list_filter_follows_grants_not_scopes() {
    let rules = rules(
        vec![payments()],
        vec![mk_client("agents", "bot"), mk_client("agents", "finance")],
        vec![
            mk_policy(
                "payments",
                "read",
                &["agents/bot", "agents/finance"],
                "payments-api",
                &["get_*"],
            ),
            mk_policy(
                "payments",
                "refunds",
                &["agents/finance"],
                "payments-api",
                &["refund_*"],
            ),
        ],
    );
    let listed = |client: &str| {
        let p = principal(client, &[]);
        let caller = mcp_warden_policy::authenticate(&rules, &p, ts(NOW)).expect("known client");
        [
            "get_balance",
            "refund_card",
            "refund_x",
            "delete_everything",
        ]
        .into_iter()
        .filter(|t| caller.lists(t))
        .collect::<Vec<_>>()
    };
    assert_eq!(listed("bot"), ["get_balance"]);
    assert_eq!(
        listed("finance"),
        ["get_balance", "refund_card", "refund_x"]
    );
}

#[test]
fn policies_grant_only_the_tool_they_reference_in_their_namespace() {
    let other_ns = mk_policy("elsewhere", "read", &["agents/bot"], "payments-api", &["*"]);
    let other_tool = mk_policy("payments", "read", &["agents/bot"], "other-api", &["*"]);
    let rules = rules(
        vec![payments()],
        vec![mk_client("agents", "bot")],
        vec![other_ns, other_tool],
    );
    assert!(matches!(
        decide_for(&rules, "bot", &["payments:read"], "get_balance"),
        Decision::DenyNotGranted { .. }
    ));
}

/// `payments` trusting the Kubernetes issuers `clusters`.
fn payments_trusting(clusters: &[&str]) -> McpTool {
    let mut tool = payments();
    for issuer in clusters {
        tool.spec.authentication.issuers.push(IssuerSpec {
            issuer: (*issuer).into(),
            kind: IssuerKind::Kubernetes,
            algorithms: vec![SigningAlgorithm::RS256],
            ..Default::default()
        });
    }
    tool
}

/// `agents/sa-bot`, identified by the ServiceAccount `bot` of its namespace (and `issuer`).
fn sa_bot(issuer: Option<&str>) -> McpClient {
    let mut c = mk_client("agents", "sa-bot");
    c.spec.identity = ClientIdentity {
        service_account: Some(ServiceAccountRef {
            namespace: None,
            name: "bot".into(),
        }),
        issuer: issuer.map(str::to_owned),
        ..Default::default()
    };
    c
}

const LOCAL: &str = "https://kubernetes.default.svc";
const OTHER: &str = "https://oidc.other-cluster.example";

fn sa_bot_read() -> McpPolicy {
    mk_policy(
        "payments",
        "read",
        &["agents/sa-bot"],
        "payments-api",
        &["*"],
    )
}

#[test]
fn service_account_identities() {
    let rules = rules(
        vec![payments_trusting(&[LOCAL])],
        vec![sa_bot(None)],
        vec![sa_bot_read()],
    );
    let mut p = principal("ignored", &["payments:read"]);
    p.issuer = LOCAL.into();
    p.subject = Some("system:serviceaccount:agents:bot".into());
    assert!(decide(&rules, &p, Call::Tool("get_balance"), ts(NOW)).is_allowed());
    for subject in ["system:serviceaccount:other:bot", "bot"] {
        p.subject = Some(subject.into());
        assert!(
            matches!(
                decide(&rules, &p, Call::Session, ts(NOW)),
                Decision::DenyUnknownClient { .. }
            ),
            "{subject}"
        );
    }
}

#[test]
fn a_service_account_without_an_issuer_is_not_matched_across_clusters() {
    // The McpTool trusts two clusters: agents/bot of the other cluster is not our sa-bot.
    let both = payments_trusting(&[LOCAL, OTHER]);
    let ambiguous = rules(vec![both.clone()], vec![sa_bot(None)], vec![sa_bot_read()]);
    let mut p = principal("ignored", &["payments:read"]);
    p.subject = Some("system:serviceaccount:agents:bot".into());
    for issuer in [LOCAL, OTHER] {
        p.issuer = issuer.into();
        assert!(
            matches!(
                decide(&ambiguous, &p, Call::Session, ts(NOW)),
                Decision::DenyUnknownClient { .. }
            ),
            "{issuer}: ambiguous without an issuer"
        );
    }
    // Naming the issuer picks the cluster.
    let named = rules(vec![both], vec![sa_bot(Some(LOCAL))], vec![sa_bot_read()]);
    p.issuer = LOCAL.into();
    assert!(decide(&named, &p, Call::Tool("get_balance"), ts(NOW)).is_allowed());
    p.issuer = OTHER.into();
    assert!(matches!(
        decide(&named, &p, Call::Session, ts(NOW)),
        Decision::DenyUnknownClient { .. }
    ));
}

#[test]
fn reasons_are_stable_labels() {
    let c = client_ref("bot");
    let all = [
        (
            Decision::Allow {
                client: c.clone(),
                policy: None,
                audit: false,
            },
            "allowed",
        ),
        (
            Decision::DenyUnknownClient {
                tool: tool_ref(),
                detail: String::new(),
            },
            "unknown_client",
        ),
        (
            Decision::DenySuspended {
                client: c.clone(),
                reason: None,
            },
            "suspended",
        ),
        (
            Decision::DenyExpired {
                client: c.clone(),
                at: ts(NOW),
            },
            "expired",
        ),
        (
            Decision::DenyReviewOverdue {
                client: c.clone(),
                due: ts(NOW),
            },
            "review_overdue",
        ),
        (
            Decision::DenyTokenRevoked {
                client: c.clone(),
                cutoff: ts(NOW),
            },
            "token_revoked",
        ),
        (
            Decision::DenyNotGranted {
                client: c.clone(),
                tool: tool_ref(),
            },
            "not_granted",
        ),
        (
            Decision::DenyInsufficientScope {
                client: c.clone(),
                policy: policy_ref("p"),
                needed: vec![],
            },
            "insufficient_scope",
        ),
    ];
    for (d, reason) in all {
        assert_eq!(d.reason(), reason);
        assert_eq!(d.is_allowed(), reason == "allowed");
    }
}

#[test]
fn an_admitted_caller_is_found_again_by_its_index_without_a_lookup() {
    let rules = rules(
        vec![payments()],
        vec![mk_client("agents", "other"), mk_client("agents", "bot")],
        vec![mk_policy(
            "payments",
            "read",
            &["agents/bot"],
            "payments-api",
            &["get_*"],
        )],
    );
    let who = principal("bot", &["payments:read"]);
    let caller = mcp_warden_policy::authenticate(&rules, &who, ts(NOW)).expect("admitted");
    assert_eq!(caller.client().object, client_ref("bot"));
    assert_eq!(rules.clients[caller.index()].object, client_ref("bot"));
    let again = mcp_warden_policy::Caller::admitted(&rules, caller.index(), &who).expect("index");
    assert_eq!(again.client().object, client_ref("bot"));
    assert_eq!(
        again.call_tool("get_balance"),
        caller.call_tool("get_balance"),
        "the same decisions"
    );
    let beyond = rules.clients.len();
    assert!(mcp_warden_policy::Caller::admitted(&rules, beyond, &who).is_none());
}
