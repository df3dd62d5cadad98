//! Keys: rotation, shared and rate-limited JWKS fetches, discovery forms, the verified-token cache.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_at_the_idp_is_picked_up_without_restart() {
    let mut idp = start_idp(300, &["k1"]);
    let rules = rules(vec![oauth_issuer(&idp.issuer)]);
    let a = Authenticator::with_config(AuthConfig {
        jwks_refresh: Duration::from_secs(1),
        jwks_min_refetch: Duration::from_millis(300),
        ..AuthConfig::default()
    });
    let t1 = idp
        .token_with("agent-alpha", "alpha-secret", "mcp:tools.list", RESOURCE)
        .expect("a token");
    assert_eq!(header_of(&t1)["kid"], "k1");
    auth(&a, &rules, &t1).await.expect("k1 token");
    assert_eq!(a.stats().jwks_fetches, 1);

    // Overlap: k2 signs, k1 still published.
    let k1 = idp.keys().expect("the keys")["keys"][0].clone();
    let k2 = gen_keys(&["k2"]).expect("a key")["keys"][0].clone();
    idp.rotate(&json!({"keys": [k2, k1]}))
        .expect("op.mjs reloads its keys");
    tokio::time::sleep(Duration::from_millis(400)).await; // past jwks_min_refetch
    let t2 = idp
        .token_with("agent-alpha", "alpha-secret", "mcp:tools.list", RESOURCE)
        .expect("a token");
    assert_eq!(header_of(&t2)["kid"], "k2");
    auth(&a, &rules, &t2)
        .await
        .expect("the new kid triggers a re-fetch");
    assert_eq!(a.stats().jwks_fetches, 2);
    auth(&a, &rules, &t1)
        .await
        .expect("k1 tokens stay valid during the overlap");

    // k1 retired: once the keys are refreshed, k1 tokens are refused, even cached ones.
    idp.rotate(&json!({"keys": [k2]}))
        .expect("op.mjs reloads its keys");
    tokio::time::sleep(Duration::from_millis(1100)).await; // past jwks_refresh
    assert_eq!(refused(&a, &rules, &t1).await, "unknown signing key (kid)");
    // The refresh, and at most one re-fetch for the unknown kid (if the machine is slow).
    assert!((3..=4).contains(&a.stats().jwks_fetches), "{:?}", a.stats());
    auth(&a, &rules, &t2)
        .await
        .expect("k2 tokens are still fine");
    let t3 = idp
        .token_with("agent-beta", "beta-secret", "mcp:tools.list", RESOURCE)
        .expect("a token");
    auth(&a, &rules, &t3).await.expect("new tokens are fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_fetches_are_shared_and_rate_limited() {
    let key = test_key("t1");
    let issuer = TestIssuer::start(&[&key]).await;
    *issuer.delay.lock().expect("lock") = Duration::from_millis(200);
    let rules = Arc::new(rules(vec![oauth_issuer(&issuer.issuer)]));
    let a = Arc::new(Authenticator::with_config(AuthConfig {
        jwks_min_refetch: Duration::from_secs(600),
        ..test_config()
    }));
    let now = now_secs();

    // 16 concurrent requests on a cold authenticator: one discovery, one JWKS fetch.
    let tokens: Vec<String> = (0..16)
        .map(|i| {
            let mut c = issuer.claims(now);
            c["jti"] = json!(format!("j{i}"));
            key.sign(key.header(), &c)
        })
        .collect();
    let mut tasks = Vec::new();
    for token in tokens {
        let (a, rules) = (a.clone(), rules.clone());
        tasks.push(tokio::spawn(async move { auth(&a, &rules, &token).await }));
    }
    for t in tasks {
        t.await.expect("task").expect("accepted");
    }
    assert_eq!(issuer.jwks_hits.load(Ordering::SeqCst), 1);
    assert_eq!(issuer.discovery_hits.load(Ordering::SeqCst), 1);

    // Unknown kids right after a fetch: refused without hammering the issuer.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (a, rules) = (a.clone(), rules.clone());
        let mut h = key.header();
        h.kid = Some(format!("unknown-{i}"));
        let token = key.sign(h, &issuer.claims(now));
        tasks.push(tokio::spawn(async move { auth(&a, &rules, &token).await }));
    }
    for t in tasks {
        let e = t.await.expect("task").expect_err("unknown kid");
        assert_eq!(e.to_string(), "unknown signing key (kid)");
    }
    assert_eq!(issuer.jwks_hits.load(Ordering::SeqCst), 1, "rate limited");

    // With a short limit: concurrent unknown kids share a single re-fetch.
    let b = Arc::new(Authenticator::with_config(AuthConfig {
        jwks_min_refetch: Duration::from_secs(1),
        ..test_config()
    }));
    auth(&b, &rules, &key.sign(key.header(), &issuer.claims(now)))
        .await
        .expect("warm up");
    let before = issuer.jwks_hits.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await; // past jwks_min_refetch
    let tokens: Vec<String> = (0..10)
        .map(|i| {
            let mut h = key.header();
            h.kid = Some(format!("unknown-{i}"));
            key.sign(h, &issuer.claims(now))
        })
        .collect();
    let mut tasks = Vec::new();
    for token in tokens {
        let (b, rules) = (b.clone(), rules.clone());
        tasks.push(tokio::spawn(async move { auth(&b, &rules, &token).await }));
    }
    for t in tasks {
        assert!(t.await.expect("task").is_err());
    }
    assert_eq!(
        issuer.jwks_hits.load(Ordering::SeqCst),
        before + 1,
        "one shared re-fetch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_forms_and_unreachable_keys() {
    let key = test_key("t1");
    let now = now_secs();

    // RFC 8414 metadata when there is no OIDC discovery document.
    let issuer = TestIssuer::start(&[&key]).await;
    *issuer.discovery.lock().expect("lock") = Discovery::Rfc8414Only;
    let rules_8414 = rules(vec![oauth_issuer(&issuer.issuer)]);
    let a = Authenticator::with_config(test_config());
    auth(
        &a,
        &rules_8414,
        &key.sign(key.header(), &issuer.claims(now)),
    )
    .await
    .expect("keys found through RFC 8414");
    assert_eq!(issuer.discovery_hits.load(Ordering::SeqCst), 2);

    // A discovery document naming another issuer is not trusted.
    let issuer = TestIssuer::start(&[&key]).await;
    *issuer.discovery.lock().expect("lock") = Discovery::WrongIssuer;
    let rules_wrong = rules(vec![oauth_issuer(&issuer.issuer)]);
    let a = Authenticator::with_config(test_config());
    let e = auth(
        &a,
        &rules_wrong,
        &key.sign(key.header(), &issuer.claims(now)),
    )
    .await
    .expect_err("discovery names another issuer");
    assert_eq!(e, AuthError::KeysUnavailable);
    assert_eq!(e.to_string(), "the issuer's signing keys are unavailable");
    assert!(e.token_sent());
    assert_eq!(issuer.jwks_hits.load(Ordering::SeqCst), 0);

    // An explicit jwks_uri skips discovery.
    let mut explicit = rules_wrong.clone();
    explicit.issuers[0].jwks_uri = Some(format!("{}/jwks", issuer.issuer));
    let before = issuer.discovery_hits.load(Ordering::SeqCst);
    auth(&a, &explicit, &key.sign(key.header(), &issuer.claims(now)))
        .await
        .expect("keys from jwks_uri");
    assert_eq!(issuer.discovery_hits.load(Ordering::SeqCst), before);

    // Keys unreachable (closed port): refused at once, and the failure is rate limited.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut down = explicit.clone();
    down.issuers[0].issuer = format!("http://127.0.0.1:{closed}");
    down.issuers[0].jwks_uri = Some(format!("http://127.0.0.1:{closed}/jwks"));
    let mut c = issuer.claims(now);
    c["iss"] = json!(down.issuers[0].issuer);
    let token = key.sign(key.header(), &c);
    let b = Authenticator::with_config(AuthConfig {
        jwks_min_refetch: Duration::from_secs(600),
        ..test_config()
    });
    for _ in 0..3 {
        assert_eq!(
            auth(&b, &down, &token).await,
            Err(AuthError::KeysUnavailable)
        );
    }
    let stats = b.stats();
    assert_eq!((stats.jwks_fetches, stats.jwks_fetch_failures), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_token_cache_is_bounded_and_follows_the_issuer_set() {
    let key = test_key("t1");
    let issuer = TestIssuer::start(&[&key]).await;
    let trusted = rules(vec![oauth_issuer(&issuer.issuer)]);
    let a = Authenticator::with_config(AuthConfig {
        cache_capacity: 2,
        ..test_config()
    });
    let now = now_secs();
    let tokens: Vec<String> = (0..3)
        .map(|i| {
            let mut c = issuer.claims(now);
            c["jti"] = json!(format!("j{i}"));
            key.sign(key.header(), &c)
        })
        .collect();
    for t in &tokens {
        auth(&a, &trusted, t).await.expect("accepted");
    }
    assert_eq!(a.stats().cached_tokens, 2, "bounded");
    auth(&a, &trusted, &tokens[2]).await.expect("cached");
    assert_eq!(a.stats().cache_hits, 1);

    // The issuer is no longer trusted: the cached token is refused.
    let other = rules(vec![oauth_issuer("http://127.0.0.1:1/other")]);
    assert_eq!(
        refused(&a, &other, &tokens[2]).await,
        "the token's issuer is not trusted"
    );
    // The issuer's audiences change: verified again, and refused.
    auth(&a, &trusted, &tokens[1]).await.expect("cached again");
    let mut moved = trusted.clone();
    moved.issuers[0].audiences = vec!["http://127.0.0.1:9401/elsewhere".into()];
    assert_eq!(
        refused(&a, &moved, &tokens[1]).await,
        "the token's audience does not include this resource"
    );
    // A shorter maximum lifetime applies to cached tokens too.
    auth(&a, &trusted, &tokens[1]).await.expect("cached again");
    let mut strict = trusted.clone();
    strict.max_token_lifetime = Duration::from_secs(60);
    assert_eq!(
        refused(&a, &strict, &tokens[1]).await,
        "the token's lifetime exceeds the maximum of 60s"
    );
    // Cached entries end at exp.
    let exp = Timestamp::from_second(now + 300).expect("ts");
    let e = a
        .authenticate(&trusted, &bearer(&tokens[1]), None, exp)
        .await
        .expect("within the skew after exp");
    assert_eq!(e.expires_at, Some(exp));
    let e = a
        .authenticate(
            &trusted,
            &bearer(&tokens[1]),
            None,
            Timestamp::from_second(now + 330).expect("ts"),
        )
        .await
        .expect_err("expired");
    assert_eq!(e.to_string(), "the token has expired");
    a.clear_cache();
    assert_eq!(a.stats().cached_tokens, 0);
}
