//! The built-in detectors: one closed enum, each with a stable name.
//!
//! Invariants:
//! - A name is snake_case, unique, and never changes meaning: it is what a
//!   policy enables, what `[REDACTED:<name>]` says, what a block reply and
//!   an audit record list, and part of metric names. New detectors get new
//!   names.
//! - [`Detector::ALL`] lists every variant once, in declaration order, so
//!   `ALL[d as usize] == d`.

/// A built-in detector. What each one matches, exactly, is documented on
/// the variant and in the module docs of [`super`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Detector {
    /// OpenAI keys: `sk-proj-`, `sk-svcacct-`, `sk-admin-`, `sk-None-` and
    /// 100 or more `[A-Za-z0-9_-]`; legacy `sk-` + 48 alphanumerics with
    /// `T3BlbkFJ` after the first 20.
    OpenaiApiKey,
    /// Anthropic keys: `sk-ant-api03-` or `sk-ant-admin01-` and exactly 95
    /// `[A-Za-z0-9_-]`; OAuth tokens `sk-ant-oat01-`, `sk-ant-ort01-` and
    /// 40 or more.
    AnthropicApiKey,
    /// Google API keys: `AIza` and exactly 35 `[A-Za-z0-9_-]`.
    GoogleApiKey,
    /// AWS access key ids: `AKIA`, `ASIA`, `ABIA` or `ACCA` and exactly 16
    /// of `[A-Z2-7]`.
    AwsAccessKeyId,
    /// AWS secret access keys: exactly 40 `[A-Za-z0-9+/]` mixing upper and
    /// lower case, shortly after an access key id or an
    /// `aws_secret_access_key`-style label.
    AwsSecretAccessKey,
    /// Amazon Bedrock API keys: long-term `ABSK` + base64, short-term
    /// `bedrock-api-key-` + base64 of `bedrock.amazonaws.com…`.
    BedrockApiKey,
    /// GitHub tokens: `ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_` and 36 or more
    /// alphanumerics; `github_pat_` and 82 or more `[A-Za-z0-9_]`.
    GithubToken,
    /// Slack tokens: `xoxb-`, `xoxp-`, `xoxa-`, `xoxr-`, `xoxs-`, `xoxe-`,
    /// `xapp-` and 20 or more `[A-Za-z0-9-]` with a digit.
    SlackToken,
    /// Slack webhook URLs: `hooks.slack.com/services/` (or `workflows/`,
    /// `triggers/`) and a path of 20 or more characters.
    SlackWebhookUrl,
    /// Stripe secret and restricted keys: `sk_` or `rk_`, then `live_`,
    /// `test_` or `prod_`, then 20 or more alphanumerics.
    StripeKey,
    /// PEM private-key blocks, `-----BEGIN … PRIVATE KEY-----` to the
    /// matching `-----END … -----` (or the end of a truncated body).
    PrivateKey,
    /// JSON Web Tokens: `eyJ…` header, `.`, `ey…` payload, `.`, signature.
    Jwt,
    /// Payment card numbers: 13–19 digits, Luhn-valid.
    PaymentCard,
    /// US social security numbers `AAA-GG-SSSS` under the SSA's rules.
    UsSsn,
    /// IBANs: registered country and length, mod-97 valid.
    Iban,
    /// Email addresses.
    Email,
    /// Phone numbers: E.164 `+` forms and North American national forms.
    Phone,
}

impl Detector {
    /// Every built-in, in declaration order.
    pub const ALL: [Detector; 17] = [
        Detector::OpenaiApiKey,
        Detector::AnthropicApiKey,
        Detector::GoogleApiKey,
        Detector::AwsAccessKeyId,
        Detector::AwsSecretAccessKey,
        Detector::BedrockApiKey,
        Detector::GithubToken,
        Detector::SlackToken,
        Detector::SlackWebhookUrl,
        Detector::StripeKey,
        Detector::PrivateKey,
        Detector::Jwt,
        Detector::PaymentCard,
        Detector::UsSsn,
        Detector::Iban,
        Detector::Email,
        Detector::Phone,
    ];

    /// The stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Detector::OpenaiApiKey => "openai_api_key",
            Detector::AnthropicApiKey => "anthropic_api_key",
            Detector::GoogleApiKey => "google_api_key",
            Detector::AwsAccessKeyId => "aws_access_key_id",
            Detector::AwsSecretAccessKey => "aws_secret_access_key",
            Detector::BedrockApiKey => "bedrock_api_key",
            Detector::GithubToken => "github_token",
            Detector::SlackToken => "slack_token",
            Detector::SlackWebhookUrl => "slack_webhook_url",
            Detector::StripeKey => "stripe_key",
            Detector::PrivateKey => "private_key",
            Detector::Jwt => "jwt",
            Detector::PaymentCard => "payment_card",
            Detector::UsSsn => "us_ssn",
            Detector::Iban => "iban",
            Detector::Email => "email",
            Detector::Phone => "phone",
        }
    }

    /// The detector with this name.
    pub fn from_name(name: &str) -> Option<Detector> {
        Detector::ALL.into_iter().find(|d| d.name() == name)
    }

    /// A credential (as opposed to personal data).
    pub fn is_secret(self) -> bool {
        self < Detector::PaymentCard
    }

    /// This detector's bit in a [`Mask`].
    pub(super) fn bit(self) -> u32 {
        1 << self as u32
    }
}

/// A set of built-ins, one bit each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Mask(pub(super) u32);

impl Mask {
    pub(super) fn has(self, d: Detector) -> bool {
        self.0 & d.bit() != 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn names_are_unique_snake_case_and_round_trip() {
        for (i, d) in Detector::ALL.into_iter().enumerate() {
            assert_eq!(d as usize, i);
            let n = d.name();
            assert!(
                n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{n}"
            );
            assert_eq!(Detector::from_name(n), Some(d));
            let same = Detector::ALL.iter().filter(|e| e.name() == n).count();
            assert_eq!(same, 1, "{n}");
        }
        assert_eq!(Detector::from_name("Email"), None);
    }

    #[test]
    fn secrets_come_before_personal_data() {
        assert!(Detector::Jwt.is_secret());
        assert!(!Detector::PaymentCard.is_secret());
        assert!(!Detector::Phone.is_secret());
    }
}
