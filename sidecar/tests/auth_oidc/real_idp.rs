//! Tokens of the real OIDC provider: accepted with the right principal, attacks refused, expiry.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_idp_tokens_are_accepted_with_the_right_principal() {
    let idp = start_idp(300, &["k1"]);
    let rules = rules(vec![oauth_issuer(&idp.issuer)]);
    let a = Authenticator::with_config(test_config());

    let token = idp
        .token_with(
            "agent-alpha",
            "alpha-secret",
            "mcp:tools.list mcp:tools.call",
            RESOURCE,
        )
        .expect("a token");
    assert_eq!(header_of(&token)["typ"], "at+jwt");
    assert_eq!(header_of(&token)["kid"], "k1");
    let claims = claims_of(&token);
    let v = auth(&a, &rules, &token)
        .await
        .expect("a real token is accepted");
    assert_eq!(v.principal.issuer, idp.issuer);
    assert_eq!(v.principal.client_id.as_deref(), Some("agent-alpha"));
    assert_eq!(v.principal.subject.as_deref(), claims["sub"].as_str());
    assert_eq!(
        v.principal.scopes,
        BTreeSet::from(["mcp:tools.list".to_owned(), "mcp:tools.call".to_owned()])
    );
    let iat = claims["iat"].as_i64().expect("iat");
    assert_eq!(
        v.principal.issued_at,
        Some(Timestamp::from_second(iat).expect("ts"))
    );
    assert_eq!(
        v.expires_at,
        Some(Timestamp::from_second(iat + 300).expect("ts"))
    );
    assert_eq!(v.token_id.as_deref(), claims["jti"].as_str());
    assert!(v.token_id.is_some());

    // The second time comes from the cache; the keys were fetched once (discovery + JWKS).
    let again = auth(&a, &rules, &token).await.expect("cached");
    assert_eq!(again, v);
    let stats = a.stats();
    assert_eq!(
        (stats.cache_hits, stats.cache_misses, stats.jwks_fetches),
        (1, 1, 1)
    );

    // Another agent, fewer scopes; scheme and host of the audience in another case.
    let beta = idp
        .token_with("agent-beta", "beta-secret", "mcp:tools.list", RESOURCE)
        .expect("a token");
    let mut upper = rules.clone();
    upper.issuers[0].audiences = vec!["HTTP://127.0.0.1:9401/mcp".into()];
    let v = auth(&a, &upper, &beta).await.expect("agent-beta");
    assert_eq!(v.principal.client_id.as_deref(), Some("agent-beta"));
    assert_eq!(
        v.principal.scopes,
        BTreeSet::from(["mcp:tools.list".to_owned()])
    );
    assert_eq!(a.stats().jwks_fetches, 1, "the keys are reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_idp_token_attacks_are_refused() {
    let idp = start_idp(300, &["k1"]);
    let trusted = rules(vec![oauth_issuer(&idp.issuer)]);
    let a = Authenticator::with_config(test_config());
    let token = idp
        .token_with("agent-alpha", "alpha-secret", "mcp:tools.list", RESOURCE)
        .expect("a token");

    // No token.
    let e = a
        .authenticate(&trusted, &HeaderMap::new(), None, Timestamp::now())
        .await
        .expect_err("no token");
    assert_eq!(e, AuthError::Missing);
    assert!(!e.token_sent());
    assert_eq!(e.to_string(), "no bearer token");

    // A valid token, but in the query string.
    let query = format!("access_token={token}");
    let e = a
        .authenticate(&trusted, &HeaderMap::new(), Some(&query), Timestamp::now())
        .await
        .expect_err("query token");
    assert_eq!(e, AuthError::NotInHeader);
    assert_eq!(
        e.to_string(),
        "tokens are accepted only in the Authorization header"
    );
    let e = a
        .authenticate(&trusted, &bearer(&token), Some(&query), Timestamp::now())
        .await
        .expect_err("query token next to a header token");
    assert_eq!(e, AuthError::NotInHeader);

    // Wrong issuer: the same real token, but this server trusts another issuer only.
    let other = rules(vec![oauth_issuer("http://127.0.0.1:1/other-idp")]);
    assert_eq!(
        refused(&a, &other, &token).await,
        "the token's issuer is not trusted"
    );

    // Wrong audience: a server with another resource URI.
    let mut elsewhere = trusted.clone();
    elsewhere.issuers[0].audiences = vec!["http://127.0.0.1:9401/other-mcp".into()];
    assert_eq!(
        refused(&a, &elsewhere, &token).await,
        "the token's audience does not include this resource"
    );

    // Lifetime over the maximum: the IdP issues 300 s tokens, this server accepts 60 s at most.
    let mut strict = trusted.clone();
    strict.max_token_lifetime = Duration::from_secs(60);
    assert_eq!(
        refused(&a, &strict, &token).await,
        "the token's lifetime exceeds the maximum of 60s"
    );

    // Garbage, and the IdP's own opaque token (not a JWT).
    assert_eq!(
        refused(&a, &trusted, "garbage").await,
        "the token is not a JWT"
    );
    assert_eq!(
        refused(&a, &trusted, "a.b.c").await,
        "malformed token header"
    );
    let opaque = idp
        .token_with(
            "agent-alpha",
            "alpha-secret",
            "mcp:tools.list",
            OPAQUE_RESOURCE,
        )
        .expect("a token");
    assert_eq!(
        refused(&a, &trusted, &opaque).await,
        "the token is not a JWT"
    );

    // A real token with a claim changed (scope escalation): the signature no longer matches.
    let mut claims = claims_of(&token);
    claims["scope"] = json!("mcp:tools.list mcp:admin");
    let parts: Vec<&str> = token.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], b64(&claims), parts[2]);
    assert_eq!(refused(&a, &trusted, &tampered).await, "invalid signature");

    // Expired: the same real token, seen after exp + clock skew.
    let exp = claims_of(&token)["exp"].as_i64().expect("exp");
    let later = Timestamp::from_second(exp + 30).expect("ts");
    let e = a
        .authenticate(&trusted, &bearer(&token), None, later)
        .await
        .expect_err("expired");
    assert_eq!(e.to_string(), "the token has expired");

    // Forged with another key but claiming the IdP and its kid, or an unknown kid.
    let key = test_key("k1");
    let mut forged_claims = claims_of(&token);
    forged_claims["client_id"] = json!("agent-forged");
    assert_eq!(
        refused(&a, &trusted, &key.sign(key.header(), &forged_claims)).await,
        "invalid signature"
    );
    let mut header = key.header();
    header.kid = Some("not-a-key-of-the-idp".into());
    assert_eq!(
        refused(&a, &trusted, &key.sign(header, &forged_claims)).await,
        "unknown signing key (kid)"
    );

    // The genuine token is still fine.
    assert!(auth(&a, &trusted, &token).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_real_tokens_expire() {
    // The IdP issues 3 s tokens; the server tolerates no clock skew.
    let idp = start_idp(3, &["k1"]);
    let mut rules = rules(vec![oauth_issuer(&idp.issuer)]);
    rules.clock_skew = Duration::ZERO;
    let a = Authenticator::with_config(test_config());
    let token = idp
        .token_with("agent-alpha", "alpha-secret", "mcp:tools.list", RESOURCE)
        .expect("a token");
    let exp = claims_of(&token)["exp"].as_i64().expect("exp");
    let v = auth(&a, &rules, &token).await.expect("fresh token");
    assert_eq!(v.expires_at, Some(Timestamp::from_second(exp).expect("ts")));

    // Wait (bounded) until the wall clock passes exp.
    for _ in 0..50 {
        if now_secs() >= exp {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(now_secs() >= exp, "exp passed");
    // The cache entry ends at exp: the token is verified again and refused.
    assert_eq!(refused(&a, &rules, &token).await, "the token has expired");

    // With 30 s of clock skew the same token is still accepted.
    rules.clock_skew = Duration::from_secs(30);
    assert!(auth(&a, &rules, &token).await.is_ok());
}
