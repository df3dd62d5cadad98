//! Forged tokens from an issuer the test controls: every attack refused.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_are_refused() {
    let key = test_key("t1");
    let stranger = test_key("t1"); // same kid, different key
    let issuer = TestIssuer::start(&[&key]).await;
    let trusted = rules(vec![oauth_issuer(&issuer.issuer)]);
    let a = Authenticator::with_config(test_config());
    let now = now_secs();

    // Sanity: a well-formed token of this issuer is accepted (keys found by discovery).
    let v = auth(&a, &trusted, &key.sign(key.header(), &issuer.claims(now)))
        .await
        .expect("a good token of the test issuer");
    assert_eq!(v.principal.client_id.as_deref(), Some("agent-forged"));
    assert_eq!(issuer.discovery_hits.load(Ordering::SeqCst), 1);

    // alg: none, no signature.
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": "t1"})),
        b64(&issuer.claims(now))
    );
    assert_eq!(
        refused(&a, &trusted, &none).await,
        "unsigned tokens (alg none) are not accepted"
    );

    // HS256 with the issuer's public key (PEM) as the HMAC secret.
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("t1".into());
    let hmac = jsonwebtoken::encode(
        &hs,
        &issuer.claims(now),
        &EncodingKey::from_secret(key.public_pem.as_bytes()),
    )
    .expect("HS256");
    assert_eq!(
        refused(&a, &trusted, &hmac).await,
        "symmetric algorithm HS256 is not accepted"
    );
    // ... also with the JWK's modulus bytes as the secret.
    let n = URL_SAFE_NO_PAD
        .decode(key.jwk["n"].as_str().expect("n"))
        .expect("n");
    let hmac = jsonwebtoken::encode(&hs, &issuer.claims(now), &EncodingKey::from_secret(&n))
        .expect("HS256");
    assert_eq!(
        refused(&a, &trusted, &hmac).await,
        "symmetric algorithm HS256 is not accepted"
    );

    // Not valid yet: nbf two minutes ahead (30 s of skew).
    let mut c = issuer.claims(now);
    c["nbf"] = json!(now + 120);
    assert_eq!(
        refused(&a, &trusted, &key.sign(key.header(), &c)).await,
        "the token is not valid yet (nbf)"
    );
    // ... while nbf within the skew is fine.
    c["nbf"] = json!(now + 20);
    assert!(
        auth(&a, &trusted, &key.sign(key.header(), &c))
            .await
            .is_ok()
    );

    // Issued in the future.
    let mut c = issuer.claims(now);
    c["iat"] = json!(now + 120);
    c["exp"] = json!(now + 400);
    assert_eq!(
        refused(&a, &trusted, &key.sign(key.header(), &c)).await,
        "the token was issued in the future (iat)"
    );

    // Lifetime over the maximum (2 h against 1 h), and no iat at all.
    let mut c = issuer.claims(now);
    c["exp"] = json!(now + 7200);
    assert_eq!(
        refused(&a, &trusted, &key.sign(key.header(), &c)).await,
        "the token's lifetime exceeds the maximum of 3600s"
    );
    let mut c = issuer.claims(now);
    c.as_object_mut().expect("object").remove("iat");
    assert_eq!(
        refused(&a, &trusted, &key.sign(key.header(), &c)).await,
        "the token has no iat, which the maximum token lifetime requires"
    );
    // No exp.
    let mut c = issuer.claims(now);
    c.as_object_mut().expect("object").remove("exp");
    assert_eq!(
        refused(&a, &trusted, &key.sign(key.header(), &c)).await,
        "the token has no exp"
    );

    // Wrong audience, wrong issuer (iss of nobody we trust).
    let mut c = issuer.claims(now);
    c["aud"] = json!(["http://127.0.0.1:9401/other"]);
    assert_eq!(
        refused(&a, &trusted, &key.sign(key.header(), &c)).await,
        "the token's audience does not include this resource"
    );
    let mut c = issuer.claims(now);
    c["iss"] = json!("https://evil.example");
    assert_eq!(
        refused(&a, &trusted, &key.sign(key.header(), &c)).await,
        "the token's issuer is not trusted"
    );

    // Unknown kid; same kid but another key.
    let mut h = key.header();
    h.kid = Some("t9".into());
    assert_eq!(
        refused(&a, &trusted, &key.sign(h, &issuer.claims(now))).await,
        "unknown signing key (kid)"
    );
    assert_eq!(
        refused(
            &a,
            &trusted,
            &stranger.sign(stranger.header(), &issuer.claims(now))
        )
        .await,
        "invalid signature"
    );

    // typ other than at+jwt / JWT; an algorithm this issuer does not allow.
    let mut h = key.header();
    h.typ = Some("id+jwt".into());
    assert_eq!(
        refused(&a, &trusted, &key.sign(h, &issuer.claims(now))).await,
        "token type (typ) is not at+jwt or JWT"
    );
    let mut es_only = trusted.clone();
    es_only.issuers[0].algorithms = vec![SigningAlgorithm::ES256];
    assert_eq!(
        refused(&a, &es_only, &key.sign(key.header(), &issuer.claims(now))).await,
        "algorithm RS256 is not accepted for this issuer"
    );
    // PS256 with the same RSA key is refused when the JWK pins RS256 and PS256 is not allowed.
    let mut h = key.header();
    h.alg = Algorithm::PS256;
    assert_eq!(
        refused(&a, &trusted, &key.sign(h, &issuer.claims(now))).await,
        "algorithm PS256 is not accepted for this issuer"
    );

    // A Kubernetes ServiceAccount token from an issuer of kind Kubernetes.
    let mut k8s_rules = trusted.clone();
    k8s_rules.issuers[0].kind = IssuerKind::Kubernetes;
    k8s_rules.issuers[0].audiences.push("mcp-warden".into());
    let sa = json!({
        "iss": issuer.issuer, "aud": ["mcp-warden"], "sub": "system:serviceaccount:team-a:agent",
        "iat": now, "exp": now + 600, "nbf": now,
        "kubernetes.io": {"namespace": "team-a", "serviceaccount": {"name": "agent", "uid": "u-1"}},
    });
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("t1".into());
    h.typ = None;
    let v = auth(&a, &k8s_rules, &key.sign(h.clone(), &sa))
        .await
        .expect("a ServiceAccount token");
    assert_eq!(
        v.principal.subject.as_deref(),
        Some("system:serviceaccount:team-a:agent")
    );
    assert_eq!(v.principal.client_id, None);
    let mut not_sa = sa.clone();
    not_sa["sub"] = json!("someone");
    assert_eq!(
        refused(&a, &k8s_rules, &key.sign(h, &not_sa)).await,
        "the token's subject is not a ServiceAccount"
    );
}
