//! The audit chain: how an event is encoded, hashed and linked to the one
//! before it, and how a stored chain is checked.
//!
//! Each event's hash is `SHA-256(previous hash || canonical bytes)`. The
//! canonical bytes are a length-prefixed encoding of every field, so no two
//! different events encode alike and the encoding needs no escaping. They are
//! stored beside the event, so anybody holding an export can recompute the
//! chain without this code; the encoding is documented on
//! [`AuditRecord::canonical_bytes`].

use std::fmt;
use std::io::Write as _;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Reading the audit trail is for auditors and administrators.
pub fn check_read_trail(actor: &crate::Actor) -> Result<(), crate::Denial> {
    if actor.roles.contains(crate::Role::Auditor) || actor.roles.contains(crate::Role::Admin) {
        Ok(())
    } else {
        Err(crate::Denial::new(
            "auditor_required",
            "Only auditors and administrators can read the audit trail.",
        ))
    }
}

/// The `prev_hash` of the first event.
pub const GENESIS_HASH: [u8; 32] = [0u8; 32];
const ENCODING_TAG: &[u8] = b"cab-audit-v1";

vocabulary!(
    /// What an audit event records: its `action`. The text is stored and
    /// hashed, so it never changes; the label names the kind of event.
    AuditAction {
        ChangeCreated = "change.created" / "Change filed",
        ChangeEdited = "change.edited" / "Change edited",
        ChangeSubmitted = "change.submitted" / "Change submitted",
        ChangeResubmitted = "change.resubmitted" / "Change resubmitted",
        ChangeWithdrawn = "change.withdrawn" / "Change withdrawn",
        ChangeCancelled = "change.cancelled" / "Change cancelled",
        ChangeCommented = "change.commented" / "Comment",
        AssessmentStarted = "change.assessment_started" / "Assessment started",
        ChangeAssessed = "change.assessed" / "Security assessment",
        ChangeVoted = "change.voted" / "CAB vote",
        ChangeApproved = "change.approved" / "Change approved",
        ChangeRejected = "change.rejected" / "Change rejected",
        ChangesRequested = "change.changes_requested" / "Changes requested",
        RetrospectiveCompleted = "change.retrospective_completed" / "Retrospective review",
        ChangeClosed = "change.closed" / "Change closed",
        ReviewOwed = "review.owed" / "Review owed",
        ReviewReopened = "review.reopened" / "Review reopened",
        ReviewSaved = "review.saved" / "Review saved",
        ReviewSignedOff = "review.signed_off" / "Review signed off",
        ReviewActionAdded = "review.action_added" / "Action item added",
        ReviewActionUpdated = "review.action_updated" / "Action item updated",
        ReviewSettingsChanged = "settings.reviews_changed" / "Review settings changed",
        TemplateProposed = "template.proposed" / "Template proposed",
        TemplateVoted = "template.voted" / "Template vote",
        TemplateApproved = "template.approved" / "Template approved",
        TemplateRejected = "template.rejected" / "Template rejected",
        TemplateRetired = "template.retired" / "Template retired",
        UserCreated = "user.created" / "Account created",
        UserRolesChanged = "user.roles_changed" / "Roles changed",
        UserRolesRequested = "user.roles_requested" / "Roles requested",
        UserRolesConfirmed = "user.roles_confirmed" / "Roles confirmed",
        UserRolesCancelled = "user.roles_cancelled" / "Role request cancelled",
        UserDisabled = "user.disabled" / "Account disabled",
        UserPasswordSet = "user.password_set" / "Password set",
        ApiTokenCreated = "api_token.created" / "API token issued",
        ApiTokenRevoked = "api_token.revoked" / "API token revoked",
        LoginSucceeded = "auth.login_succeeded" / "Signed in",
        LoginFailed = "auth.login_failed" / "Sign-in failed",
        LoginLocked = "auth.login_locked" / "Sign-in locked",
        Logout = "auth.logout" / "Signed out",
        SessionExpired = "auth.session_expired" / "Session ended",
        QuorumChanged = "settings.quorum_changed" / "Quorum policy changed",
        DeploymentAuthorized = "deployment.authorized" / "Deployment authorized",
        DeploymentStarted = "deployment.started" / "Deployment started",
        DeploymentSucceeded = "deployment.succeeded" / "Deployment succeeded",
        DeploymentFailed = "deployment.failed" / "Deployment failed",
        DeploymentRolledBack = "deployment.rolled_back" / "Deployment rolled back",
        DeploymentAborted = "deployment.aborted" / "Deployment aborted",
        DeploymentExpired = "deployment.expired" / "Authorization expired",
        EnvironmentsChanged = "settings.environments_changed" / "Environments changed",
        AccountEnvironmentsSet = "user.environments_set" / "Pipeline environments set",
        FreezeDeclared = "freeze.declared" / "Freeze declared",
        FreezeLifted = "freeze.lifted" / "Freeze lifted",
        SigningKeyRotated = "keys.rotated" / "Signing key rotated",
        BreakGlassRequested = "break_glass.requested" / "Break-glass requested",
        BreakGlassConfirmed = "break_glass.confirmed" / "Break-glass confirmed",
        DeploymentObserved = "deployment.observed" / "Deployment nobody authorized",
        FindingResolved = "finding.resolved" / "Finding resolved",
        MaintenancePeriodAdded = "maintenance.added" / "Maintenance period added",
        MaintenancePeriodRemoved = "maintenance.removed" / "Maintenance period removed",
        CalendarLimitSet = "settings.calendar_limit_set" / "Production changes per hour set",
        CalendarFeedCreated = "calendar.feed_created" / "Calendar feed created",
        CalendarFeedRevoked = "calendar.feed_revoked" / "Calendar feed revoked",
        ReleaseCreated = "release.created" / "Release planned",
        ReleaseEdited = "release.edited" / "Release plan edited",
        ReleaseSubmitted = "release.submitted" / "Release submitted for go/no-go",
        ReleaseVoted = "release.voted" / "Go/no-go vote",
        ReleaseApproved = "release.approved" / "Release approved",
        ReleaseReturned = "release.returned" / "Release returned to draft",
        ReleaseApprovalVoided = "release.approval_voided" / "Release approval voided",
        ReleasePhaseOpened = "release.phase_opened" / "Release phase opened",
        ReleasePhaseRolledBack = "release.phase_rolled_back" / "Release phase rolled back",
        ReleaseCompleted = "release.completed" / "Release completed",
        ReleaseCancelled = "release.cancelled" / "Release cancelled",
        AuditExported = "audit.exported" / "Audit trail exported",
        CheckpointKeyMade = "audit.checkpoint_key_made" / "Checkpoint key made",
        DemoSeeded = "demo.seeded" / "Demo data",
        AccessDenied = "access.denied" / "Refused",
    }
);

vocabulary!(
    /// What a refused attempt tried to do: `attempted` in the payload of an
    /// [`AuditAction::AccessDenied`] event. The label completes "tried to …",
    /// followed by the thing acted on, if any.
    Attempt {
        ChangeCreate = "change.create" / "file a change request",
        ChangeEdit = "change.edit" / "edit",
        ChangeSubmit = "change.submit" / "submit",
        ChangeWithdraw = "change.withdraw" / "withdraw",
        ChangeCancel = "change.cancel" / "cancel",
        ChangeComment = "change.comment" / "comment on",
        ChangeAssess = "change.assess" / "assess",
        ChangeVote = "change.vote" / "vote on",
        ChangeDeployProd = "change.deploy_prod" / "deploy to PROD",
        ChangeRetrospective = "change.retrospective" / "record the retrospective review of",
        ChangeClose = "change.close" / "close",
        ReviewWrite = "review.write" / "write the review of",
        ReviewSignOff = "review.sign_off" / "sign off the review of",
        ReviewAction = "review.action" / "track an action item of",
        ReviewSettingsSet = "settings.reviews" / "change the review settings",
        TemplatePropose = "template.propose" / "propose a standard-change template",
        TemplateVote = "template.vote" / "vote on",
        TemplateRetire = "template.retire" / "retire",
        TemplateUse = "template.use" / "make a change from",
        UserRead = "user.read" / "open the user administration",
        UserCreate = "user.create" / "create an account",
        UserSetRoles = "user.set_roles" / "change the roles of",
        UserConfirmRoles = "user.confirm_roles" / "confirm the roles requested for",
        UserCancelRoles = "user.cancel_roles" / "cancel the roles requested for",
        RoleGrantRead = "role_grant.read" / "read the role requests",
        UserDisable = "user.disable" / "disable",
        UserSetPassword = "user.set_password" / "set the password of",
        ApiTokenCreate = "api_token.create" / "issue an API token to",
        ApiTokenRevoke = "api_token.revoke" / "revoke an API token of",
        AuditRead = "audit.read" / "read the audit trail",
        AuditCheckpoint = "audit.checkpoint" / "sign a checkpoint of the audit trail",
        QuorumSet = "settings.quorum" / "change the quorum policy",
        DeploymentAuthorize = "deployment.authorize" / "deploy",
        DeploymentReport = "deployment.report" / "report on",
        EnvironmentsSet = "settings.environments" / "change the environments",
        AccountEnvironmentsSet = "user.set_environments" / "set the environments of",
        FreezeDeclare = "freeze.declare" / "declare a freeze",
        FreezeLift = "freeze.lift" / "lift",
        BreakGlassRequest = "break_glass.request" / "ask for a break-glass deployment of",
        BreakGlassConfirm = "break_glass.confirm" / "confirm",
        DeploymentObserve = "deployment.observe" / "report what runs in",
        FindingResolve = "finding.resolve" / "resolve",
        MaintenanceManage = "maintenance.manage" / "change the maintenance periods",
        CalendarLimitSet = "settings.calendar_limit" / "set how many production changes an hour may hold",
        CalendarFeedCreate = "calendar.feed_create" / "make a calendar feed",
        ReleaseCreate = "release.create" / "plan a release",
        ReleaseEdit = "release.edit" / "edit",
        ReleaseSubmit = "release.submit" / "submit",
        ReleaseVote = "release.vote" / "vote on",
        ReleaseAdvance = "release.advance" / "advance",
        ReleaseRollback = "release.rollback" / "roll back a phase of",
        ReleaseCancel = "release.cancel" / "cancel",
    }
);

/// One audit event's content: everything that is hashed.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub seq: i64,
    /// UTC, microsecond precision (what PostgreSQL keeps).
    pub occurred_at: DateTime<Utc>,
    pub actor_id: Option<Uuid>,
    pub actor_username: Option<String>,
    /// The roles the actor held at that moment.
    pub actor_roles: Vec<String>,
    pub action: String,
    pub entity_type: String,
    pub entity_id: Option<String>,
    pub payload: Value,
    pub request_id: Option<String>,
    pub client_addr: Option<String>,
}

impl AuditRecord {
    /// The bytes that are hashed. Every item is written as a 4-byte big-endian
    /// length followed by that many bytes; an optional item is a single byte
    /// `0` when absent, or `1` followed by the item. In order: the tag
    /// `cab-audit-v1`, the sequence number in decimal, the time as
    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, actor id (optional, hyphenated lowercase),
    /// actor username (optional), the number of roles in decimal followed by
    /// each role, action, entity type, entity id (optional), the payload as
    /// JSON with object keys sorted and no white space, request id (optional),
    /// client address (optional).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        self.write_canonical(&mut out);
        out
    }

    /// Appends the canonical bytes to `out`: a verifier checking a million
    /// events reuses one buffer instead of allocating one per event.
    pub fn write_canonical(&self, out: &mut Vec<u8>) {
        put(out, ENCODING_TAG);
        put_with(out, |o| {
            let _ = write!(o, "{}", self.seq);
        });
        put_with(out, |o| write_time(o, self.occurred_at));
        match self.actor_id {
            None => out.push(0),
            Some(id) => {
                out.push(1);
                put(
                    out,
                    id.hyphenated()
                        .encode_lower(&mut Uuid::encode_buffer())
                        .as_bytes(),
                );
            }
        }
        put_opt(out, self.actor_username.as_deref());
        put_with(out, |o| {
            let _ = write!(o, "{}", self.actor_roles.len());
        });
        for role in &self.actor_roles {
            put(out, role.as_bytes());
        }
        put(out, self.action.as_bytes());
        put(out, self.entity_type.as_bytes());
        put_opt(out, self.entity_id.as_deref());
        put_with(out, |o| write_json(&self.payload, o));
        put_opt(out, self.request_id.as_deref());
        put_opt(out, self.client_addr.as_deref());
    }
}

/// The time format used in the canonical encoding.
pub fn format_time(t: DateTime<Utc>) -> String {
    let mut out = Vec::with_capacity(27);
    write_time(&mut out, t);
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes `t` as `YYYY-MM-DDTHH:MM:SS.ffffffZ`. Four-digit years are
/// written directly (a verifier writes a million of them); any other year,
/// and a leap second, as chrono writes them.
fn write_time(out: &mut Vec<u8>, t: DateTime<Utc>) {
    let year = t.year();
    let nanos = t.nanosecond();
    if (0..=9999).contains(&year) && nanos < 1_000_000_000 {
        let _ = write!(
            out,
            "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            nanos / 1000
        );
    } else {
        let _ = write!(out, "{}", t.format("%Y-%m-%dT%H:%M:%S%.6fZ"));
    }
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&bytes[..len as usize]);
}

/// An item written in place: its length is filled in once it is written.
fn put_with(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    write(out);
    let len = u32::try_from(out.len() - at - 4).unwrap_or(u32::MAX);
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

fn put_opt(out: &mut Vec<u8>, item: Option<&str>) {
    match item {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put(out, s.as_bytes());
        }
    }
}

/// JSON with object keys sorted by their UTF-8 bytes and no insignificant
/// white space, whatever map ordering serde_json was built with.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::new();
    write_json(value, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn write_json(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(k, out);
                out.push(b':');
                write_json(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(v, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

/// A string, number, boolean or null as serde_json writes it. Writing to a
/// vector cannot fail, and neither can these values' serialization.
fn write_scalar<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(out, value);
}

/// A JSON value read from text without building a [`Value`]: strings stay
/// borrowed from the text where they hold no escape, and objects are lists.
/// Its [`JsonText::write_canonical`] writes exactly what [`canonical_json`]
/// writes for the [`Value`] the same text reads as (a repeated key keeps its
/// last value, as there), at a fraction of the cost: an offline check reads
/// every event's payload this way.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonText<'a> {
    Null,
    Bool(bool),
    PosInt(u64),
    NegInt(i64),
    Float(f64),
    Str(std::borrow::Cow<'a, str>),
    Array(Vec<JsonText<'a>>),
    Object(Vec<(std::borrow::Cow<'a, str>, JsonText<'a>)>),
}

impl JsonText<'_> {
    /// Appends the value as JSON with object keys sorted by their UTF-8
    /// bytes and no white space.
    pub fn write_canonical(&self, out: &mut Vec<u8>) {
        match self {
            JsonText::Null => out.extend_from_slice(b"null"),
            JsonText::Bool(true) => out.extend_from_slice(b"true"),
            JsonText::Bool(false) => out.extend_from_slice(b"false"),
            JsonText::PosInt(n) => write_scalar(n, out),
            JsonText::NegInt(n) => write_scalar(n, out),
            JsonText::Float(n) => write_scalar(n, out),
            JsonText::Str(s) => write_scalar(s.as_ref(), out),
            JsonText::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.write_canonical(out);
                }
                out.push(b']');
            }
            JsonText::Object(members) => {
                let mut sorted: Vec<&(std::borrow::Cow<'_, str>, JsonText<'_>)> =
                    members.iter().collect();
                // Stable: of a key given twice, the last one given is kept.
                sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                out.push(b'{');
                let mut first = true;
                for (i, (key, value)) in sorted.iter().map(|m| (&m.0, &m.1)).enumerate() {
                    if sorted.get(i + 1).is_some_and(|next| next.0 == *key) {
                        continue;
                    }
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    write_scalar(key.as_ref(), out);
                    out.push(b':');
                    value.write_canonical(out);
                }
                out.push(b'}');
            }
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for JsonText<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonTextVisitor)
    }
}

struct JsonTextVisitor;

impl<'de> serde::de::Visitor<'de> for JsonTextVisitor {
    type Value = JsonText<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(JsonText::Null)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(JsonText::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        JsonText::deserialize(d)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
        Ok(JsonText::Bool(b))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
        Ok(JsonText::PosInt(n))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
        // As serde_json's own numbers: one not below zero is a positive one.
        Ok(match u64::try_from(n) {
            Ok(p) => JsonText::PosInt(p),
            Err(_) => JsonText::NegInt(n),
        })
    }

    fn visit_f64<E>(self, n: f64) -> Result<Self::Value, E> {
        // As serde_json's own numbers: one that is not finite reads as null.
        Ok(if n.is_finite() {
            JsonText::Float(n)
        } else {
            JsonText::Null
        })
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(JsonText::Str(std::borrow::Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(JsonText::Str(std::borrow::Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(JsonText::Str(std::borrow::Cow::Owned(s)))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(JsonText::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(key) = map.next_key::<JsonKey<'de>>()? {
            members.push((key.0, map.next_value()?));
        }
        Ok(JsonText::Object(members))
    }
}

/// An object's key, borrowed from the text where it holds no escape.
struct JsonKey<'a>(std::borrow::Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for JsonKey<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match JsonText::<'de>::deserialize(d)? {
            JsonText::Str(s) => Ok(JsonKey(s)),
            _ => Err(serde::de::Error::custom("an object's key is a string")),
        }
    }
}

pub fn chain_hash(prev_hash: &[u8], canonical: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev_hash);
    h.update(canonical);
    h.finalize().into()
}

/// An event as stored: its content and its links.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub record: AuditRecord,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
    pub canonical: Vec<u8>,
}

/// What is wrong with the chain, at the first event where it goes wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// The first event whose link is broken (for a truncated tail, the first
    /// missing one).
    pub seq: i64,
    pub reason: String,
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "audit event {} breaks the chain: {}",
            self.seq, self.reason
        )
    }
}

impl std::error::Error for ChainBreak {}

/// A recorded head: the last event's sequence number and hash, kept apart
/// from the events (in the database's head row, or written down by an auditor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: i64,
    pub hash: Vec<u8>,
}

/// Checks events one at a time, in the order of their sequence numbers, so a
/// chain of any length is verified in constant memory.
#[derive(Debug)]
pub struct ChainVerifier {
    next_seq: i64,
    prev_hash: Vec<u8>,
    checked: u64,
    /// The canonical bytes of the event being checked, reused.
    scratch: Vec<u8>,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainVerifier {
    pub fn new() -> Self {
        Self {
            next_seq: 1,
            prev_hash: GENESIS_HASH.to_vec(),
            checked: 0,
            scratch: Vec::new(),
        }
    }

    /// A verifier that goes on from a head already verified (a signed
    /// checkpoint): the next event must link to it.
    pub fn after(head: &ChainHead) -> Self {
        Self {
            next_seq: head.seq + 1,
            prev_hash: head.hash.clone(),
            checked: 0,
            scratch: Vec::new(),
        }
    }

    pub fn check(&mut self, event: &StoredEvent) -> Result<(), ChainBreak> {
        let seq = event.record.seq;
        let broken = |reason: String| ChainBreak { seq, reason };
        if seq != self.next_seq {
            return Err(broken(format!(
                "expected sequence number {} here; events are missing or out of order",
                self.next_seq
            )));
        }
        if event.prev_hash != self.prev_hash {
            return Err(broken(
                "its previous-hash does not match the hash of the event before it".into(),
            ));
        }
        if event.record.canonical_bytes() != event.canonical {
            return Err(broken(
                "its stored fields differ from the bytes that were hashed (edited)".into(),
            ));
        }
        if chain_hash(&event.prev_hash, &event.canonical).as_slice() != event.hash.as_slice() {
            return Err(broken("its hash does not match its content".into()));
        }
        self.prev_hash = event.hash.clone();
        self.next_seq += 1;
        self.checked += 1;
        Ok(())
    }

    /// Checks an event from its fields and its stored hash alone: the hash
    /// must be SHA-256 of the previous event's hash and the canonical bytes
    /// of these fields. Neither the stored previous hash nor the stored
    /// canonical bytes are needed, so a verifier reads half as much; an
    /// edited field, or an event rehashed after an edit, breaks here or at
    /// the next event all the same.
    pub fn check_content(&mut self, record: &AuditRecord, hash: &[u8]) -> Result<(), ChainBreak> {
        let seq = record.seq;
        if seq != self.next_seq {
            return Err(ChainBreak {
                seq,
                reason: format!(
                    "expected sequence number {} here; events are missing or out of order",
                    self.next_seq
                ),
            });
        }
        self.scratch.clear();
        record.write_canonical(&mut self.scratch);
        if chain_hash(&self.prev_hash, &self.scratch).as_slice() != hash {
            return Err(ChainBreak {
                seq,
                reason: "its hash is not that of its fields after the event before it: it was edited, or the one before it was".into(),
            });
        }
        self.prev_hash.clear();
        self.prev_hash.extend_from_slice(hash);
        self.next_seq += 1;
        self.checked += 1;
        Ok(())
    }

    /// The sequence number of the last event checked (0 before any).
    pub fn last_seq(&self) -> i64 {
        self.next_seq - 1
    }

    /// Ends the check. Against a recorded head, a chain that stops early has a
    /// truncated tail, and one whose event at the head differs was rewritten.
    pub fn finish(self, head: Option<&ChainHead>) -> Result<u64, ChainBreak> {
        if let Some(head) = head {
            let last = self.next_seq - 1;
            if last < head.seq {
                return Err(ChainBreak {
                    seq: self.next_seq,
                    reason: format!(
                        "missing: the recorded head is event {} but the chain ends at event {}",
                        head.seq, last
                    ),
                });
            }
            if last == head.seq && self.prev_hash != head.hash {
                return Err(ChainBreak {
                    seq: last,
                    reason: "its hash differs from the recorded head".into(),
                });
            }
        }
        Ok(self.checked)
    }
}

/// Verifies a whole chain held in memory (tests, offline exports).
pub fn verify_chain<'a>(
    events: impl IntoIterator<Item = &'a StoredEvent>,
    head: Option<&ChainHead>,
) -> Result<u64, ChainBreak> {
    let mut verifier = ChainVerifier::new();
    for event in events {
        verifier.check(event)?;
    }
    verifier.finish(head)
}

/// Builds the next stored event after `prev_hash` (the writer's side).
pub fn seal(record: AuditRecord, prev_hash: &[u8]) -> StoredEvent {
    let canonical = record.canonical_bytes();
    let hash = chain_hash(prev_hash, &canonical).to_vec();
    StoredEvent {
        record,
        prev_hash: prev_hash.to_vec(),
        hash,
        canonical,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_auditors_and_administrators_read_the_trail() {
        use crate::Role;
        for role in Role::ALL.iter().copied() {
            let actor = crate::Actor {
                id: Uuid::from_u128(1),
                roles: [role].into_iter().collect(),
                is_service: false,
            };
            let got = check_read_trail(&actor).map_err(|d| d.code);
            let reads = matches!(role, Role::Auditor | Role::Admin);
            assert_eq!(
                got,
                if reads {
                    Ok(())
                } else {
                    Err("auditor_required")
                },
                "{role}"
            );
        }
        let nobody = crate::Actor {
            id: Uuid::from_u128(2),
            roles: crate::RoleSet::default(),
            is_service: false,
        };
        let denial = check_read_trail(&nobody).unwrap_err();
        assert_eq!(
            denial.message,
            "Only auditors and administrators can read the audit trail."
        );
    }

    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    #[test]
    fn every_action_the_rules_name_is_an_attempt() {
        use crate::approval::Duty;
        use crate::change::ChangeAction;
        use crate::standard_template::TemplateAction;
        let named = ChangeAction::ALL
            .iter()
            .map(|a| a.as_str())
            .chain(
                [Duty::Assess, Duty::Vote, Duty::DeployProd]
                    .into_iter()
                    .map(Duty::as_str),
            )
            .chain(
                [
                    TemplateAction::Propose,
                    TemplateAction::Vote,
                    TemplateAction::Retire,
                    TemplateAction::Use,
                ]
                .into_iter()
                .map(TemplateAction::as_str),
            );
        for name in named {
            assert!(Attempt::parse(name).is_some(), "{name}");
        }
        assert_eq!(
            AuditAction::parse("change.voted"),
            Some(AuditAction::ChangeVoted)
        );
        assert_eq!(AuditAction::parse("change.vote"), None);
    }

    fn record(seq: i64) -> AuditRecord {
        AuditRecord {
            seq,
            occurred_at: Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap(),
            actor_id: Some(Uuid::from_u128(7)),
            actor_username: Some("alice".into()),
            actor_roles: vec!["engineer".into()],
            action: "user.created".into(),
            entity_type: "user".into(),
            entity_id: Some(seq.to_string()),
            payload: json!({"b": 1, "a": ["x", {"d": null, "c": true}]}),
            request_id: None,
            client_addr: Some("127.0.0.1".into()),
        }
    }

    fn chain(n: i64) -> Vec<StoredEvent> {
        let mut prev = GENESIS_HASH.to_vec();
        (1..=n)
            .map(|seq| {
                let e = seal(record(seq), &prev);
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    fn head(events: &[StoredEvent]) -> ChainHead {
        let last = events.last().unwrap();
        ChainHead {
            seq: last.record.seq,
            hash: last.hash.clone(),
        }
    }

    #[test]
    fn json_text_writes_what_canonical_json_writes() {
        for text in [
            r#"{"b": 1, "a": ["x", {"d": null, "c": true}], "ab": false}"#,
            r#"{"title": "Rotate the \"edge\" keys, \u00fcn\u00efcode & =1+1", "n": -12}"#,
            r#"{"s": "tab\there\nnew\u0001line\\ \/ é", "z": [], "y": {}, "x": [[1], [2, 3]]}"#,
            r#"{"big": 18446744073709551615, "neg": -9223372036854775808, "zero": 0, "minus_zero": -0}"#,
            r#"{"f": 1.5, "e": 1e3, "g": -2.5e-3, "h": 1.0}"#,
            r#"{"huge": 1e400}"#,
            r#"{"a": 1, "a": 2, "b": {"k": "first", "k": "last"}, "c": [true, false, null]}"#,
            r#"{"\u0062": "escaped key", "a\"b": 1, "é": 2, "e": 3, "": 4}"#,
            r#"["top", "level", 1, {"b": 2, "a": 1}]"#,
            r#""just a string""#,
            "42",
            "-7",
            "true",
            "false",
            "null",
            "{}",
        ] {
            let Ok(value) = serde_json::from_str::<Value>(text) else {
                // Out of range for serde_json too: the reader refuses it alike.
                assert!(serde_json::from_str::<JsonText>(text).is_err(), "{text}");
                continue;
            };
            let read: JsonText = serde_json::from_str(text).expect(text);
            let mut out = Vec::new();
            read.write_canonical(&mut out);
            assert_eq!(
                String::from_utf8(out).expect("utf-8"),
                canonical_json(&value),
                "{text}"
            );
        }
        // Strings without escapes are borrowed from the text.
        let read: JsonText =
            serde_json::from_str(r#"{"plain": "text", "esc": "a\nb"}"#).expect("json");
        let JsonText::Object(members) = read else {
            panic!("an object")
        };
        assert!(matches!(members[0].0, std::borrow::Cow::Borrowed("plain")));
        assert!(matches!(
            members[0].1,
            JsonText::Str(std::borrow::Cow::Borrowed("text"))
        ));
        assert!(matches!(
            members[1].1,
            JsonText::Str(std::borrow::Cow::Owned(_))
        ));
        assert_eq!(members.len(), 2);
        assert!(serde_json::from_str::<JsonText>("{1: 2}").is_err());
        assert!(serde_json::from_str::<JsonText>("[1,").is_err());
    }

    #[test]
    fn json_text_numbers_are_serde_jsons() {
        fn read(t: &str) -> JsonText<'_> {
            serde_json::from_str(t).expect(t)
        }
        assert_eq!(read("7"), JsonText::PosInt(7));
        assert_eq!(read("-7"), JsonText::NegInt(-7));
        assert_eq!(read("1.5"), JsonText::Float(1.5));
        assert_eq!(read("null"), JsonText::Null);
        assert_eq!(read("true"), JsonText::Bool(true));
        assert_eq!(read("false"), JsonText::Bool(false));
        use serde::de::Visitor;
        let v = JsonTextVisitor;
        assert_eq!(
            v.visit_i64::<serde_json::Error>(5).expect("n"),
            JsonText::PosInt(5)
        );
        assert_eq!(
            JsonTextVisitor
                .visit_i64::<serde_json::Error>(0)
                .expect("n"),
            JsonText::PosInt(0)
        );
        assert_eq!(
            JsonTextVisitor
                .visit_f64::<serde_json::Error>(f64::INFINITY)
                .expect("n"),
            JsonText::Null
        );
        assert_eq!(
            JsonTextVisitor
                .visit_unit::<serde_json::Error>()
                .expect("n"),
            JsonText::Null
        );
        assert_eq!(
            JsonTextVisitor
                .visit_none::<serde_json::Error>()
                .expect("n"),
            JsonText::Null
        );
        assert_eq!(
            JsonTextVisitor
                .visit_string::<serde_json::Error>("owned".into())
                .expect("s"),
            JsonText::Str("owned".into())
        );
        let mut out = Vec::new();
        JsonText::Float(0.1).write_canonical(&mut out);
        JsonText::NegInt(-3).write_canonical(&mut out);
        assert_eq!(out, b"0.1-3");
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        assert_eq!(
            canonical_json(&json!({"b": 1, "a": ["x", {"d": null, "c": true}]})),
            r#"{"a":["x",{"c":true,"d":null}],"b":1}"#
        );
    }

    #[test]
    fn canonical_bytes_are_exactly_the_documented_encoding() {
        let mut r = record(42);
        r.occurred_at = Utc
            .with_ymd_and_hms(2026, 3, 1, 12, 0, 5)
            .unwrap()
            .with_nanosecond(123_456_789)
            .unwrap();
        r.actor_roles = vec!["engineer".into(), "cab_member".into()];
        r.request_id = Some("req-1".into());
        r.client_addr = None;
        fn item(out: &mut Vec<u8>, s: &str) {
            out.extend_from_slice(&(s.len() as u32).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        let mut want = Vec::new();
        item(&mut want, "cab-audit-v1");
        item(&mut want, "42");
        item(&mut want, "2026-03-01T12:00:05.123456Z");
        want.push(1);
        item(&mut want, "00000000-0000-0000-0000-000000000007");
        want.push(1);
        item(&mut want, "alice");
        item(&mut want, "2");
        item(&mut want, "engineer");
        item(&mut want, "cab_member");
        item(&mut want, "user.created");
        item(&mut want, "user");
        want.push(1);
        item(&mut want, "42");
        item(&mut want, r#"{"a":["x",{"c":true,"d":null}],"b":1}"#);
        want.push(1);
        item(&mut want, "req-1");
        want.push(0);
        assert_eq!(r.canonical_bytes(), want);
        // Appending to a buffer that already holds bytes adds the same bytes.
        let mut buf = b"before".to_vec();
        r.write_canonical(&mut buf);
        assert_eq!(&buf[..6], b"before");
        assert_eq!(&buf[6..], want.as_slice());
    }

    #[test]
    fn times_are_written_as_chrono_writes_them() {
        let chrono_way = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        let mut times = vec![
            Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(7, 2, 3, 4, 5, 6).unwrap(),
            Utc.with_ymd_and_hms(999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-1, 6, 15, 8, 9, 10).unwrap(),
        ];
        for (i, nanos) in [
            0,
            1_000,
            999_999_000,
            5_000_999,
            1_000_000_000,
            1_999_999_000,
        ]
        .into_iter()
        .enumerate()
        {
            let base = Utc.with_ymd_and_hms(2026, 6, 30, 23, 59, 59).unwrap();
            times.push(base.with_nanosecond(nanos).unwrap() + chrono::Duration::days(i as i64));
            // A leap second only at :59.
            times.push(base.with_nanosecond(nanos).unwrap());
        }
        for t in times {
            assert_eq!(format_time(t), chrono_way(t), "{t:?}");
        }
        assert_eq!(
            format_time(
                Utc.with_ymd_and_hms(2026, 6, 30, 23, 59, 59)
                    .unwrap()
                    .with_nanosecond(1_500_000_000)
                    .unwrap()
            ),
            "2026-06-30T23:59:60.500000Z"
        );
        assert_eq!(
            format_time(Utc.with_ymd_and_hms(7, 2, 3, 4, 5, 6).unwrap()),
            "0007-02-03T04:05:06.000000Z"
        );
    }

    #[test]
    fn json_text_is_escaped_and_numbers_written_as_serde_json_writes_them() {
        let v = json!({
            "q\"uote": "a\\b\n\t\u{1}\u{7f}é\u{1F600}</",
            "n": [0, -1, u64::MAX, i64::MIN, 1.5, -0.25, 1e300],
            "z": {"": false, "A": true, "a": null, "\u{e9}": "", "\u{10000}": {}},
            "e": [],
        });
        assert_eq!(
            canonical_json(&v),
            concat!(
                r#"{"e":[],"n":[0,-1,18446744073709551615,-9223372036854775808,1.5,-0.25,1e+300],"#,
                "\"q\\\"uote\":\"a\\\\b\\n\\t\\u0001\u{7f}é😀</\",",
                r#""z":{"":false,"A":true,"a":null,"é":"","𐀀":{}}}"#
            )
        );
        for scalar in [json!(null), json!(true), json!(3), json!("x\"y")] {
            assert_eq!(canonical_json(&scalar), scalar.to_string());
        }
    }

    #[test]
    fn absent_and_empty_encode_differently() {
        let mut a = record(1);
        let mut b = record(1);
        a.entity_id = None;
        b.entity_id = Some(String::new());
        assert_ne!(a.canonical_bytes(), b.canonical_bytes());
        // Shifting text between adjacent fields changes the encoding.
        a.entity_id = Some("x".into());
        b.entity_id = Some("x".into());
        a.action = "ab".into();
        a.entity_type = "c".into();
        b.action = "a".into();
        b.entity_type = "bc".into();
        assert_ne!(a.canonical_bytes(), b.canonical_bytes());
    }

    #[test]
    fn a_break_says_which_event_and_why() {
        let b = ChainBreak {
            seq: 4,
            reason: "edited".into(),
        };
        assert_eq!(b.to_string(), "audit event 4 breaks the chain: edited");
    }

    #[test]
    fn the_time_is_part_of_the_hashed_bytes() {
        let a = record(1);
        let mut b = record(1);
        b.occurred_at += chrono::Duration::microseconds(1);
        assert_ne!(a.canonical_bytes(), b.canonical_bytes());
        assert_eq!(format_time(a.occurred_at), "2026-03-01T12:00:00.000000Z");
        // An edited time is caught by the verifier.
        let mut events = chain(3);
        events[1].record.occurred_at += chrono::Duration::seconds(1);
        assert_eq!(verify_chain(&events, None).unwrap_err().seq, 2);
    }

    #[test]
    fn a_resealed_last_event_differs_from_the_recorded_head() {
        let mut events = chain(3);
        let recorded = head(&events);
        // Someone rewrites the last event and seals it again: the chain is
        // consistent in itself, but not with the head kept elsewhere.
        let mut forged = record(3);
        forged.actor_username = Some("mallory".into());
        events[2] = seal(forged, &events[1].hash);
        assert_eq!(verify_chain(&events, None), Ok(3));
        let broken = verify_chain(&events, Some(&recorded)).unwrap_err();
        assert_eq!(broken.seq, 3);
        assert!(broken.reason.contains("recorded head"), "{}", broken.reason);
    }

    #[test]
    fn the_verifier_knows_where_it_stopped() {
        let events = chain(4);
        let mut v = ChainVerifier::new();
        assert_eq!(v.last_seq(), 0);
        for (i, e) in events.iter().enumerate() {
            v.check(e).unwrap();
            assert_eq!(v.last_seq(), i as i64 + 1);
        }
        // A head further on than the chain: the tail was cut off.
        let mut ahead = head(&events);
        ahead.seq = 6;
        let broken = v.finish(Some(&ahead)).unwrap_err();
        assert_eq!(broken.seq, 5);
    }

    #[test]
    fn content_alone_verifies_and_catches_each_kind_of_tampering() {
        let events = chain(5);
        let mut v = ChainVerifier::new();
        for e in &events {
            v.check_content(&e.record, &e.hash).expect("intact");
        }
        assert_eq!(v.finish(Some(&head(&events))), Ok(5));
        // An edited field.
        let mut edited = events.clone();
        edited[2].record.actor_username = Some("mallory".into());
        let mut v = ChainVerifier::new();
        let broke = edited
            .iter()
            .find_map(|e| v.check_content(&e.record, &e.hash).err())
            .expect("broken");
        assert_eq!(broke.seq, 3);
        assert!(broke.reason.contains("edited"), "{broke}");
        // Edited and rehashed: the next one breaks.
        let mut rehashed = events.clone();
        rehashed[2].record.payload = serde_json::json!({"rewritten": true});
        let resealed = seal(rehashed[2].record.clone(), &rehashed[1].hash);
        rehashed[2] = resealed;
        let mut v = ChainVerifier::new();
        let broke = rehashed
            .iter()
            .find_map(|e| v.check_content(&e.record, &e.hash).err())
            .expect("broken");
        assert_eq!(broke.seq, 4);
        // A missing event.
        let mut v = ChainVerifier::new();
        let broke = events
            .iter()
            .filter(|e| e.record.seq != 2)
            .find_map(|e| v.check_content(&e.record, &e.hash).err())
            .expect("broken");
        assert_eq!(broke.seq, 3);
        assert!(broke.reason.contains("expected sequence number 2"));
        // Going on from a checkpoint.
        let mut v = ChainVerifier::after(&ChainHead {
            seq: 2,
            hash: events[1].hash.clone(),
        });
        for e in &events[2..] {
            v.check_content(&e.record, &e.hash).expect("intact");
        }
        assert_eq!(v.last_seq(), 5);
    }

    #[test]
    fn an_intact_chain_verifies() {
        let events = chain(5);
        assert_eq!(verify_chain(&events, Some(&head(&events))), Ok(5));
        assert_eq!(verify_chain(&[], None), Ok(0));
    }

    #[test]
    fn an_edited_field_is_named() {
        let mut events = chain(5);
        events[2].record.actor_username = Some("mallory".into());
        assert_eq!(verify_chain(&events, None).unwrap_err().seq, 3);
    }

    #[test]
    fn an_edit_with_rehashed_event_breaks_the_next_link() {
        let mut events = chain(5);
        events[2].record.action = "user.deleted".into();
        let resealed = seal(events[2].record.clone(), &events[1].hash);
        events[2] = resealed;
        assert_eq!(verify_chain(&events, None).unwrap_err().seq, 4);
    }

    #[test]
    fn a_deleted_event_is_named_by_its_successor() {
        let mut events = chain(5);
        events.remove(2);
        let err = verify_chain(&events, None).unwrap_err();
        assert_eq!(err.seq, 4);
        assert!(err.reason.contains("expected sequence number 3"), "{err}");
    }

    #[test]
    fn reordered_events_are_caught() {
        let mut events = chain(5);
        events.swap(1, 2);
        assert_eq!(verify_chain(&events, None).unwrap_err().seq, 3);
    }

    #[test]
    fn a_truncated_tail_is_caught_against_the_head() {
        let mut events = chain(5);
        let recorded = head(&events);
        events.truncate(3);
        let err = verify_chain(&events, Some(&recorded)).unwrap_err();
        assert_eq!(err.seq, 4);
        // Without a head the shorter chain is self-consistent.
        assert_eq!(verify_chain(&events, None), Ok(3));
    }
}
