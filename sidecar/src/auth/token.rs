//! The pure part of token verification: where the token comes from, the JWS structure, the
//! header checks and the claim checks. No I/O, no keys.
//!
//! ```text
//! headers, query ──bearer()──► &str token
//!                 ──Jwt::parse()──► header {alg, typ, kid, crit} + claims (JSON object)
//!                 ──check_header()──► alg (not none, not HS*), typ, crit
//!                 ──validate_claims(issuer, rules, now)──► Claims (iss, aud, exp/nbf/iat, lifetime,
//!                                                           scopes, client_id/azp, sub, jti)
//! ```
//!
//! Time rules, with `L = rules.clock_skew` (all comparisons exact to the nanosecond of `now`):
//! * `exp` is required; the token is expired once `now >= exp + L`;
//! * `nbf`, when present: not valid yet while `now < nbf - L`;
//! * `iat`, when present: refused when `iat > now + L` (issued in the future), or when
//!   `exp <= iat`;
//! * lifetime: `exp - iat <= rules.max_token_lifetime`. When a maximum is enforced (non-zero),
//!   a token **without `iat` is refused**, since its lifetime cannot be known (RFC 9068 makes `iat`
//!   mandatory anyway). A `max_token_lifetime` of zero disables the lifetime check.

use super::AuthError;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jiff::Timestamp;
use jsonwebtoken::Algorithm;
use mcp_warden_crds::{IssuerKind, SigningAlgorithm};
use mcp_warden_policy::compile::Issuer;
use serde_json::{Map, Value};
use std::{borrow::Cow, collections::BTreeSet, time::Duration};

/// The longest token accepted (bytes); longer ones are refused before any parsing.
pub(crate) const MAX_TOKEN_BYTES: usize = 16 * 1024;

fn invalid(reason: impl Into<String>) -> AuthError {
    AuthError::Invalid(reason.into())
}

/// The bearer token of a request: only from exactly one `Authorization: Bearer` header, and never
/// when the query string carries an `access_token` parameter (RFC 6750 §2.3 is not supported:
/// AUTH-07).
pub(crate) fn bearer<'h>(
    headers: &'h http::HeaderMap,
    query: Option<&str>,
) -> Result<&'h str, AuthError> {
    if let Some(query) = query
        && url::form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == "access_token")
    {
        return Err(AuthError::NotInHeader);
    }
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(AuthError::Missing);
    };
    if values.next().is_some() {
        return Err(invalid("several Authorization headers"));
    }
    let value = value
        .to_str()
        .map_err(|_| invalid("malformed Authorization header"))?;
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    let (scheme, rest) = value.split_once([' ', '\t']).unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(invalid("the Authorization scheme must be Bearer"));
    }
    let token = rest.trim_start_matches([' ', '\t']);
    if token.is_empty() {
        return Err(invalid("empty bearer token"));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(invalid("token too large"));
    }
    // RFC 6750 b64token: ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/", then "=" padding.
    let body = token.trim_end_matches('=');
    if !body
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
    {
        return Err(invalid("malformed bearer token"));
    }
    Ok(token)
}

/// A JWS in compact serialization, decoded but not verified.
#[derive(Debug)]
pub(crate) struct Jwt<'t> {
    /// `alg`, as written.
    pub alg: String,
    /// `kid`.
    pub kid: Option<String>,
    /// `typ`.
    pub typ: Option<String>,
    /// Whether a non-empty `crit` list is present.
    pub crit: bool,
    /// The claims object.
    pub claims: Map<String, Value>,
    /// `base64url(header) "." base64url(claims)`: the signed bytes.
    pub signing_input: &'t str,
    /// The base64url signature.
    pub signature: &'t str,
}

impl<'t> Jwt<'t> {
    /// Splits and decodes a compact JWS; refuses JWEs and anything that is not a JWT.
    pub fn parse(token: &'t str) -> Result<Self, AuthError> {
        let parts = token.split('.').count();
        if parts == 5 {
            return Err(invalid("encrypted tokens (JWE) are not accepted"));
        }
        if parts != 3 {
            return Err(invalid("the token is not a JWT"));
        }
        let (signing_input, signature) = token
            .rsplit_once('.')
            .ok_or_else(|| invalid("the token is not a JWT"))?;
        let (header, payload) = signing_input
            .split_once('.')
            .ok_or_else(|| invalid("the token is not a JWT"))?;
        let header = decode_object(header).ok_or_else(|| invalid("malformed token header"))?;
        let claims = decode_object(payload).ok_or_else(|| invalid("malformed token claims"))?;
        let alg = match header.get("alg") {
            Some(Value::String(alg)) => alg.clone(),
            _ => return Err(invalid("malformed token header: no alg")),
        };
        let kid = match header.get("kid") {
            None | Some(Value::Null) => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(invalid("malformed token header: kid")),
        };
        let typ = match header.get("typ") {
            None | Some(Value::Null) => None,
            Some(Value::String(typ)) => Some(typ.clone()),
            Some(_) => return Err(invalid("malformed token header: typ")),
        };
        let crit = match header.get("crit") {
            None | Some(Value::Null) => false,
            Some(Value::Array(list)) => !list.is_empty(),
            Some(_) => true,
        };
        Ok(Self {
            alg,
            kid,
            typ,
            crit,
            claims,
            signing_input,
            signature,
        })
    }

    /// The unverified `iss`, to pick the issuer whose keys and rules apply.
    pub fn issuer(&self) -> Result<&str, AuthError> {
        match self.claims.get("iss") {
            Some(Value::String(iss)) if !iss.is_empty() => Ok(iss),
            None | Some(Value::Null) => Err(invalid("the token has no issuer")),
            Some(_) => Err(invalid("malformed claim iss")),
        }
    }
}

fn decode_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// The jsonwebtoken algorithm of an allow-list entry.
pub(crate) fn algorithm(alg: SigningAlgorithm) -> Algorithm {
    match alg {
        SigningAlgorithm::RS256 => Algorithm::RS256,
        SigningAlgorithm::RS384 => Algorithm::RS384,
        SigningAlgorithm::RS512 => Algorithm::RS512,
        SigningAlgorithm::PS256 => Algorithm::PS256,
        SigningAlgorithm::PS384 => Algorithm::PS384,
        SigningAlgorithm::PS512 => Algorithm::PS512,
        SigningAlgorithm::ES256 => Algorithm::ES256,
        SigningAlgorithm::ES384 => Algorithm::ES384,
        SigningAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}

/// Checks the header, then picks the issuer by the unverified `iss` (`trusted` finds it among
/// the configured ones). `none` and HS* are refused outright, `typ` must be absent or `at+jwt` /
/// `application/at+jwt` / `JWT`, no `crit` extension may be required, and the algorithm must be
/// on the issuer's allow-list (which can only name asymmetric algorithms).
pub(crate) fn check_header<'r>(
    jwt: &Jwt<'_>,
    trusted: impl FnOnce(&str) -> Option<&'r Issuer>,
) -> Result<(Algorithm, &'r Issuer), AuthError> {
    let alg = jwt.alg.as_str();
    if alg.eq_ignore_ascii_case("none") {
        return Err(invalid("unsigned tokens (alg none) are not accepted"));
    }
    if alg
        .as_bytes()
        .get(..2)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"HS"))
    {
        return Err(invalid(format!(
            "symmetric algorithm {} is not accepted",
            printable(alg, 16)
        )));
    }
    if let Some(typ) = jwt.typ.as_deref() {
        let typ = typ.to_ascii_lowercase();
        let typ = typ.strip_prefix("application/").unwrap_or(&typ);
        if typ != "at+jwt" && typ != "jwt" {
            return Err(invalid("token type (typ) is not at+jwt or JWT"));
        }
    }
    if jwt.crit {
        return Err(invalid(
            "critical header parameters (crit) are not supported",
        ));
    }
    let Some(issuer) = trusted(jwt.issuer()?) else {
        return Err(invalid("the token's issuer is not trusted"));
    };
    let alg = issuer
        .algorithms
        .iter()
        .map(|a| algorithm(*a))
        .find(|a| format!("{a:?}") == alg)
        .ok_or_else(|| {
            invalid(format!(
                "algorithm {} is not accepted for this issuer",
                printable(alg, 16)
            ))
        })?;
    Ok((alg, issuer))
}

/// At most `max` characters of an untrusted value, printable ASCII only (for reasons).
fn printable(text: &str, max: usize) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect()
}

/// The claims of a token that passed every claim check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Claims {
    pub issuer: String,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub scopes: BTreeSet<String>,
    pub issued_at: Option<Timestamp>,
    pub expires_at: Timestamp,
    pub token_id: Option<String>,
}

/// The settings of `RuleSet` that claim validation reads.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub clock_skew: Duration,
    pub max_token_lifetime: Duration,
}

/// Validates the claims of a token from `issuer` at `now` (see the module docs for the rules).
pub(crate) fn validate_claims(
    claims: &Map<String, Value>,
    issuer: &Issuer,
    limits: Limits,
    now: Timestamp,
) -> Result<Claims, AuthError> {
    // iss: exact.
    match claims.get("iss") {
        Some(Value::String(iss)) if *iss == issuer.issuer => {}
        _ => return Err(invalid("the token's issuer is not trusted")),
    }

    // aud: a string or an array of strings, one of which is an accepted audience.
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(aud)) => vec![aud.as_str()],
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| v.as_str().ok_or_else(|| invalid("malformed claim aud")))
            .collect::<Result<_, _>>()?,
        None | Some(Value::Null) => return Err(invalid("the token has no audience")),
        Some(_) => return Err(invalid("malformed claim aud")),
    };
    let accepted: Vec<Cow<'_, str>> = issuer.audiences.iter().map(|a| canonical_uri(a)).collect();
    if !audiences
        .iter()
        .any(|aud| accepted.contains(&canonical_uri(aud)))
    {
        return Err(invalid(
            "the token's audience does not include this resource",
        ));
    }

    // Times, in nanoseconds since the epoch.
    let now_ns = now.as_nanosecond();
    let skew_ns = i128::try_from(limits.clock_skew.as_nanos()).unwrap_or(i128::MAX / 4);
    let exp = numeric_date(claims, "exp")?.ok_or_else(|| invalid("the token has no exp"))?;
    let nbf = numeric_date(claims, "nbf")?;
    let iat = numeric_date(claims, "iat")?;
    if now_ns >= exp + skew_ns {
        return Err(invalid("the token has expired"));
    }
    if let Some(nbf) = nbf
        && now_ns < nbf - skew_ns
    {
        return Err(invalid("the token is not valid yet (nbf)"));
    }
    if let Some(iat) = iat {
        if now_ns < iat - skew_ns {
            return Err(invalid("the token was issued in the future (iat)"));
        }
        if exp <= iat {
            return Err(invalid("the token expires before it was issued"));
        }
    }
    if !limits.max_token_lifetime.is_zero() {
        let Some(iat) = iat else {
            return Err(invalid(
                "the token has no iat, which the maximum token lifetime requires",
            ));
        };
        let max_ns = i128::try_from(limits.max_token_lifetime.as_nanos()).unwrap_or(i128::MAX / 4);
        if exp - iat > max_ns {
            return Err(invalid(format!(
                "the token's lifetime exceeds the maximum of {}s",
                limits.max_token_lifetime.as_secs()
            )));
        }
    }

    let subject = string_claim(claims, "sub")?;
    if issuer.kind == IssuerKind::Kubernetes {
        check_service_account(claims, subject.as_deref())?;
    }
    let client_id = match string_claim(claims, "client_id")? {
        Some(id) => Some(id),
        None => string_claim(claims, "azp")?,
    };
    Ok(Claims {
        issuer: issuer.issuer.clone(),
        subject,
        client_id,
        scopes: scopes(claims)?,
        issued_at: iat.map(timestamp),
        expires_at: timestamp(exp),
        token_id: string_claim(claims, "jti")?,
    })
}

/// A Kubernetes ServiceAccount token's `sub` is `system:serviceaccount:<namespace>:<name>`, and
/// its `kubernetes.io` claim, when present, names the same account.
fn check_service_account(
    claims: &Map<String, Value>,
    subject: Option<&str>,
) -> Result<(), AuthError> {
    let not_sa = || invalid("the token's subject is not a ServiceAccount");
    let (ns, name) = subject
        .and_then(|s| s.strip_prefix("system:serviceaccount:"))
        .and_then(|s| s.split_once(':'))
        .ok_or_else(not_sa)?;
    if ns.is_empty() || name.is_empty() || name.contains(':') {
        return Err(not_sa());
    }
    if let Some(k8s) = claims.get("kubernetes.io") {
        let claimed_ns = k8s.get("namespace").and_then(Value::as_str);
        let claimed_name = k8s
            .get("serviceaccount")
            .and_then(|sa| sa.get("name"))
            .and_then(Value::as_str);
        if claimed_ns.is_some_and(|c| c != ns) || claimed_name.is_some_and(|c| c != name) {
            return Err(invalid(
                "the token's kubernetes.io claim does not match its subject",
            ));
        }
    }
    Ok(())
}

/// `scope` (space-separated string), else `scp` (array of strings, or a space-separated string).
fn scopes(claims: &Map<String, Value>) -> Result<BTreeSet<String>, AuthError> {
    let split = |s: &str| -> BTreeSet<String> {
        s.split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    match claims.get("scope") {
        Some(Value::String(s)) => return Ok(split(s)),
        None | Some(Value::Null) => {}
        Some(_) => return Err(invalid("malformed claim scope")),
    }
    match claims.get("scp") {
        None | Some(Value::Null) => Ok(BTreeSet::new()),
        Some(Value::String(s)) => Ok(split(s)),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| {
                v.as_str()
                    .filter(|s| !s.is_empty() && !s.contains(' '))
                    .map(str::to_owned)
                    .ok_or_else(|| invalid("malformed claim scp"))
            })
            .collect(),
        Some(_) => Err(invalid("malformed claim scp")),
    }
}

fn string_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<String>, AuthError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(format!("malformed claim {name}"))),
    }
}

/// The latest NumericDate accepted: 9999-12-31T23:59:59Z.
const MAX_NUMERIC_DATE: f64 = 253_402_300_799.0;

/// A NumericDate claim (seconds, possibly fractional) in nanoseconds since the epoch.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i128>, AuthError> {
    let malformed = || invalid(format!("malformed claim {name}"));
    let value = match claims.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n,
        Some(_) => return Err(malformed()),
    };
    if let Some(secs) = value.as_i64() {
        if !(0..=MAX_NUMERIC_DATE as i64).contains(&secs) {
            return Err(malformed());
        }
        return Ok(Some(i128::from(secs) * 1_000_000_000));
    }
    let secs = value.as_f64().ok_or_else(malformed)?;
    if !secs.is_finite() || !(0.0..=MAX_NUMERIC_DATE).contains(&secs) {
        return Err(malformed());
    }
    // Millisecond precision is plenty for a NumericDate.
    Ok(Some(i128::from((secs * 1000.0).floor() as i64) * 1_000_000))
}

/// A nanosecond count (within the NumericDate range) as a timestamp, to the second.
fn timestamp(ns: i128) -> Timestamp {
    let secs = i64::try_from(ns.div_euclid(1_000_000_000)).unwrap_or(0);
    Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A URI with its scheme and authority lowercased and a lone `/` path dropped, for comparing
/// audiences (AUTH-06: scheme and host in any case). Anything that is not `scheme://…` is kept
/// as written.
pub(crate) fn canonical_uri(uri: &str) -> Cow<'_, str> {
    let Some(i) = uri.find("://") else {
        return Cow::Borrowed(uri);
    };
    let rest = &uri[i + 3..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let tail = if tail == "/" { "" } else { tail };
    let scheme = &uri[..i];
    if scheme.bytes().any(|b| b.is_ascii_uppercase())
        || authority.bytes().any(|b| b.is_ascii_uppercase())
        || tail.len() != rest.len() - end
    {
        Cow::Owned(format!(
            "{}://{}{}",
            scheme.to_ascii_lowercase(),
            authority.to_ascii_lowercase(),
            tail
        ))
    } else {
        Cow::Borrowed(uri)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
    use serde_json::json;

    const ISS: &str = "https://idp.example";
    const RESOURCE: &str = "https://mcp.example/mcp";
    const T0: i64 = 1_800_000_000;

    fn issuer(kind: IssuerKind) -> Issuer {
        Issuer {
            issuer: ISS.into(),
            jwks_uri: None,
            audiences: vec![RESOURCE.into(), "mcp-warden".into()],
            algorithms: vec![SigningAlgorithm::RS256, SigningAlgorithm::ES256],
            kind,
        }
    }

    fn limits() -> Limits {
        Limits {
            clock_skew: Duration::from_secs(30),
            max_token_lifetime: Duration::from_secs(3600),
        }
    }

    fn at(secs: i64, nanos: i32) -> Timestamp {
        Timestamp::new(secs, nanos).unwrap()
    }

    fn claims(extra: Value) -> Map<String, Value> {
        let mut base = json!({
            "iss": ISS, "aud": RESOURCE, "sub": "user-1", "client_id": "agent-alpha",
            "iat": T0, "exp": T0 + 300, "jti": "j1", "scope": "a b",
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                base.as_object_mut().unwrap().remove(k);
            } else {
                base[k] = v.clone();
            }
        }
        base.as_object().unwrap().clone()
    }

    fn check(extra: Value, now: Timestamp) -> Result<Claims, AuthError> {
        validate_claims(&claims(extra), &issuer(IssuerKind::OAuth), limits(), now)
    }

    fn reason(r: Result<Claims, AuthError>) -> String {
        r.expect_err("must be refused").to_string()
    }

    #[test]
    fn valid_claims_make_a_principal() {
        let c = check(json!({}), at(T0 + 10, 0)).unwrap();
        assert_eq!(c.issuer, ISS);
        assert_eq!(c.subject.as_deref(), Some("user-1"));
        assert_eq!(c.client_id.as_deref(), Some("agent-alpha"));
        assert_eq!(c.scopes, BTreeSet::from(["a".to_owned(), "b".to_owned()]));
        assert_eq!(c.issued_at, Some(at(T0, 0)));
        assert_eq!(c.expires_at, at(T0 + 300, 0));
        assert_eq!(c.token_id.as_deref(), Some("j1"));
    }

    #[test]
    fn exp_boundary_with_leeway() {
        // Expired once now >= exp + 30 s.
        assert!(check(json!({}), at(T0 + 300 + 29, 999_999_999)).is_ok());
        assert_eq!(
            reason(check(json!({}), at(T0 + 330, 0))),
            "the token has expired"
        );
        assert_eq!(
            reason(check(json!({"exp": null}), at(T0, 0))),
            "the token has no exp"
        );
        assert_eq!(
            reason(check(json!({"exp": "soon"}), at(T0, 0))),
            "malformed claim exp"
        );
        assert_eq!(
            reason(check(json!({"exp": -5}), at(T0, 0))),
            "malformed claim exp"
        );
        // Fractional NumericDates are accepted.
        assert!(check(json!({"exp": (T0 + 300) as f64 + 0.5}), at(T0 + 330, 0)).is_ok());
        assert!(
            check(
                json!({"exp": (T0 + 300) as f64 + 0.5}),
                at(T0 + 330, 500_000_000)
            )
            .is_err()
        );
    }

    #[test]
    fn nbf_boundary_with_leeway() {
        let nbf = T0 + 100;
        // Not valid yet while now < nbf - 30 s.
        assert_eq!(
            reason(check(
                json!({"nbf": nbf}),
                at(nbf - 30, 0) - jiff::SignedDuration::from_nanos(1)
            )),
            "the token is not valid yet (nbf)"
        );
        assert!(check(json!({"nbf": nbf}), at(nbf - 30, 0)).is_ok());
    }

    #[test]
    fn iat_in_the_future_and_lifetime() {
        // iat beyond now + 30 s is refused.
        assert!(check(json!({}), at(T0 - 30, 0)).is_ok());
        assert_eq!(
            reason(check(json!({}), at(T0 - 31, 999_999_999))),
            "the token was issued in the future (iat)"
        );
        // exp - iat == max is accepted, one second more is not.
        assert!(check(json!({"exp": T0 + 3600}), at(T0, 0)).is_ok());
        assert_eq!(
            reason(check(json!({"exp": T0 + 3601}), at(T0, 0))),
            "the token's lifetime exceeds the maximum of 3600s"
        );
        // No iat while a maximum is enforced.
        assert_eq!(
            reason(check(json!({"iat": null}), at(T0, 0))),
            "the token has no iat, which the maximum token lifetime requires"
        );
        // ... and accepted when the maximum is disabled (zero).
        let no_max = Limits {
            max_token_lifetime: Duration::ZERO,
            ..limits()
        };
        let c = validate_claims(
            &claims(json!({"iat": null, "exp": T0 + 86_400 * 365})),
            &issuer(IssuerKind::OAuth),
            no_max,
            at(T0, 0),
        );
        assert!(c.is_ok());
        assert_eq!(
            reason(check(json!({"exp": T0}), at(T0, 0))),
            "the token expires before it was issued"
        );
    }

    #[test]
    fn issuer_must_match_exactly() {
        assert_eq!(
            reason(check(json!({"iss": "https://idp.example/"}), at(T0, 0))),
            "the token's issuer is not trusted"
        );
        assert_eq!(
            reason(check(json!({"iss": "HTTPS://idp.example"}), at(T0, 0))),
            "the token's issuer is not trusted"
        );
    }

    #[test]
    fn audience_forms() {
        let now = at(T0, 0);
        assert!(check(json!({"aud": [ "other", RESOURCE ]}), now).is_ok());
        assert!(check(json!({"aud": "mcp-warden"}), now).is_ok());
        // Scheme and host in any case; a lone trailing slash is the same URI.
        assert!(check(json!({"aud": "HTTPS://MCP.Example/mcp"}), now).is_ok());
        assert!(check(json!({"aud": "https://mcp.example/mcp/"}), now).is_err());
        // The path is case-sensitive.
        let wrong = "the token's audience does not include this resource";
        assert_eq!(
            reason(check(json!({"aud": "https://mcp.example/MCP"}), now)),
            wrong
        );
        assert_eq!(
            reason(check(json!({"aud": "https://mcp.example/mcp2"}), now)),
            wrong
        );
        assert_eq!(reason(check(json!({"aud": []}), now)), wrong);
        assert_eq!(
            reason(check(json!({"aud": null}), now)),
            "the token has no audience"
        );
        assert_eq!(
            reason(check(json!({"aud": [1]}), now)),
            "malformed claim aud"
        );
        assert_eq!(reason(check(json!({"aud": 7}), now)), "malformed claim aud");
    }

    #[test]
    fn canonical_uris() {
        assert_eq!(
            canonical_uri("HTTPS://H.Example:8443/Mcp"),
            "https://h.example:8443/Mcp"
        );
        assert_eq!(canonical_uri("https://h.example/"), "https://h.example");
        assert_eq!(
            canonical_uri("https://h.example/a/"),
            "https://h.example/a/"
        );
        assert_eq!(canonical_uri("Not-A-URI"), "Not-A-URI");
        assert!(matches!(canonical_uri("https://h/mcp"), Cow::Borrowed(_)));
    }

    #[test]
    fn scope_parsing() {
        let now = at(T0, 0);
        let set = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
        assert_eq!(
            check(json!({"scope": " a  b a "}), now).unwrap().scopes,
            set(&["a", "b"])
        );
        assert_eq!(
            check(json!({"scope": null, "scp": ["x", "y"]}), now)
                .unwrap()
                .scopes,
            set(&["x", "y"])
        );
        assert_eq!(
            check(json!({"scope": null, "scp": "x y"}), now)
                .unwrap()
                .scopes,
            set(&["x", "y"])
        );
        assert_eq!(check(json!({"scope": null}), now).unwrap().scopes, set(&[]));
        // `scope` wins over `scp`.
        assert_eq!(
            check(json!({"scope": "a", "scp": ["x"]}), now)
                .unwrap()
                .scopes,
            set(&["a"])
        );
        assert_eq!(
            reason(check(json!({"scope": ["a"]}), now)),
            "malformed claim scope"
        );
        assert_eq!(
            reason(check(json!({"scope": null, "scp": [1]}), now)),
            "malformed claim scp"
        );
    }

    #[test]
    fn client_id_falls_back_to_azp() {
        let now = at(T0, 0);
        let c = check(json!({"client_id": null, "azp": "web"}), now).unwrap();
        assert_eq!(c.client_id.as_deref(), Some("web"));
        let c = check(json!({"azp": "web"}), now).unwrap();
        assert_eq!(c.client_id.as_deref(), Some("agent-alpha"));
        assert_eq!(reason(check(json!({"sub": 5}), now)), "malformed claim sub");
    }

    #[test]
    fn service_account_subjects() {
        let k8s = issuer(IssuerKind::Kubernetes);
        let now = at(T0, 0);
        let sa = |extra| validate_claims(&claims(extra), &k8s, limits(), now);
        let ok = sa(json!({"sub": "system:serviceaccount:team-a:agent", "aud": "mcp-warden", "client_id": null,
            "kubernetes.io": {"namespace": "team-a", "serviceaccount": {"name": "agent", "uid": "u"}}}))
        .unwrap();
        assert_eq!(
            ok.subject.as_deref(),
            Some("system:serviceaccount:team-a:agent")
        );
        assert_eq!(ok.client_id, None);
        let not_sa = "the token's subject is not a ServiceAccount";
        assert_eq!(
            sa(json!({"sub": "user-1"})).unwrap_err().to_string(),
            not_sa
        );
        assert_eq!(
            sa(json!({"sub": "system:serviceaccount:team-a"}))
                .unwrap_err()
                .to_string(),
            not_sa
        );
        assert_eq!(
            sa(json!({"sub": "system:serviceaccount::x"}))
                .unwrap_err()
                .to_string(),
            not_sa
        );
        assert_eq!(
            sa(json!({"sub": "system:serviceaccount:team-a:agent", "kubernetes.io": {"namespace": "team-b"}}))
                .unwrap_err()
                .to_string(),
            "the token's kubernetes.io claim does not match its subject"
        );
    }

    fn b64(v: Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap())
    }

    fn token(header: Value) -> String {
        format!("{}.{}.c2ln", b64(header), b64(json!({"iss": ISS})))
    }

    fn header_check(header: Value) -> Result<Algorithm, AuthError> {
        let t = token(header);
        let jwt = Jwt::parse(&t)?;
        let trusted = issuer(IssuerKind::OAuth);
        check_header(&jwt, |iss| (iss == ISS).then_some(&trusted)).map(|(alg, _)| alg)
    }

    #[test]
    fn algorithm_confusion_is_refused() {
        assert_eq!(
            header_check(json!({"alg": "RS256"})).unwrap(),
            Algorithm::RS256
        );
        assert_eq!(
            header_check(json!({"alg": "ES256", "kid": "k"})).unwrap(),
            Algorithm::ES256
        );
        let refused = |h| header_check(h).unwrap_err().to_string();
        assert_eq!(
            refused(json!({"alg": "none"})),
            "unsigned tokens (alg none) are not accepted"
        );
        assert_eq!(
            refused(json!({"alg": "NONE"})),
            "unsigned tokens (alg none) are not accepted"
        );
        assert_eq!(
            refused(json!({"alg": "HS256"})),
            "symmetric algorithm HS256 is not accepted"
        );
        assert_eq!(
            refused(json!({"alg": "hs512"})),
            "symmetric algorithm hs512 is not accepted"
        );
        // Asymmetric but not on this issuer's list.
        assert_eq!(
            refused(json!({"alg": "PS256"})),
            "algorithm PS256 is not accepted for this issuer"
        );
        assert_eq!(
            refused(json!({"alg": "rs256"})),
            "algorithm rs256 is not accepted for this issuer"
        );
        assert_eq!(refused(json!({"alg": 5})), "malformed token header: no alg");
        assert_eq!(refused(json!({})), "malformed token header: no alg");
        assert_eq!(
            refused(json!({"alg": "RS256", "crit": ["b64"]})),
            "critical header parameters (crit) are not supported"
        );
        // Multi-byte text where a prefix is sliced must not panic.
        assert_eq!(
            refused(json!({"alg": "Hé256"})),
            "algorithm H256 is not accepted for this issuer"
        );
        assert_eq!(
            refused(json!({"alg": "é"})),
            "algorithm  is not accepted for this issuer"
        );
        // Untrusted issuer; header checks come first, even without an issuer.
        let untrusted = |header: Value, claims: Value| {
            let t = format!("{}.{}.c2ln", b64(header), b64(claims));
            check_header(&Jwt::parse(&t).unwrap(), |_| None)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            untrusted(json!({"alg": "RS256"}), json!({"iss": ISS})),
            "the token's issuer is not trusted"
        );
        assert_eq!(
            untrusted(json!({"alg": "none"}), json!({})),
            "unsigned tokens (alg none) are not accepted"
        );
        assert_eq!(
            untrusted(json!({"alg": "RS256"}), json!({})),
            "the token has no issuer"
        );
    }

    #[test]
    fn typ_values() {
        for typ in [
            "at+jwt",
            "AT+JWT",
            "application/at+jwt",
            "JWT",
            "jwt",
            "application/jwt",
        ] {
            assert!(
                header_check(json!({"alg": "RS256", "typ": typ})).is_ok(),
                "{typ}"
            );
        }
        for typ in ["JOSE", "id+jwt", "dpop+jwt", "logout+jwt", ""] {
            assert_eq!(
                header_check(json!({"alg": "RS256", "typ": typ}))
                    .unwrap_err()
                    .to_string(),
                "token type (typ) is not at+jwt or JWT",
                "{typ}"
            );
        }
    }

    #[test]
    fn structure() {
        let parse = |t: &str| Jwt::parse(t).map(|_| ()).unwrap_err().to_string();
        assert_eq!(parse("garbage"), "the token is not a JWT");
        assert_eq!(parse("a.b"), "the token is not a JWT");
        assert_eq!(
            parse("a.b.c.d.e"),
            "encrypted tokens (JWE) are not accepted"
        );
        assert_eq!(parse("a.b.c"), "malformed token header");
        assert_eq!(
            parse(&format!("{}.e30=.x", b64(json!({"alg": "RS256"})))),
            "malformed token claims"
        );
        assert_eq!(
            parse(&format!(
                "{}.{}.x",
                b64(json!({"alg": "RS256"})),
                b64(json!([1]))
            )),
            "malformed token claims"
        );
        let t = format!(
            "{}.{}.sig",
            b64(json!({"alg": "RS256", "kid": "k1"})),
            b64(json!({"iss": 5}))
        );
        assert_eq!(
            Jwt::parse(&t).unwrap().issuer().unwrap_err().to_string(),
            "malformed claim iss"
        );
        let jwt_text = token(json!({"alg": "RS256", "kid": "k1"}));
        let jwt = Jwt::parse(&jwt_text).unwrap();
        assert_eq!(jwt.kid.as_deref(), Some("k1"));
        assert_eq!(jwt.signature, "c2ln");
        assert_eq!(jwt.issuer().unwrap(), ISS);
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn bearer_only_from_the_header() {
        assert_eq!(
            bearer(&headers(&["Bearer abc.def.ghi"]), None).unwrap(),
            "abc.def.ghi"
        );
        assert_eq!(bearer(&headers(&["bearer  abc"]), None).unwrap(), "abc");
        assert_eq!(
            bearer(&headers(&["BEARER abc=="]), Some("x=1")).unwrap(),
            "abc=="
        );
        assert_eq!(bearer(&headers(&[]), None), Err(AuthError::Missing));
        assert_eq!(
            bearer(&headers(&[]), Some("a=1&b=2")),
            Err(AuthError::Missing)
        );
        // A token in the query string is refused, even next to a header token.
        assert_eq!(
            bearer(&headers(&[]), Some("access_token=abc")),
            Err(AuthError::NotInHeader)
        );
        assert_eq!(
            bearer(&headers(&["Bearer abc"]), Some("x=1&access%5Ftoken=abc")),
            Err(AuthError::NotInHeader)
        );
        assert!(AuthError::NotInHeader.token_sent());
        let refused = |v: &[&str]| bearer(&headers(v), None).unwrap_err().to_string();
        assert_eq!(
            refused(&["Bearer a", "Bearer b"]),
            "several Authorization headers"
        );
        assert_eq!(
            refused(&["Basic YTpi"]),
            "the Authorization scheme must be Bearer"
        );
        assert_eq!(refused(&["Bearer"]), "empty bearer token");
        assert_eq!(refused(&["Bearer   "]), "empty bearer token");
        assert_eq!(refused(&["Bearer a b"]), "malformed bearer token");
        assert_eq!(refused(&["Bearer a\"b"]), "malformed bearer token");
        let huge = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
        assert_eq!(refused(&[&huge]), "token too large");
    }
}
