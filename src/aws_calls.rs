//! Every AWS call the product makes, and the IAM actions AWS authorizes it by: the one table the
//! adapters name their calls from (an access-denied error says which permission is missing),
//! `github-audit-sekoia permissions` prints, and the template's policy test
//! (`scripts/policy_check.py`) evaluates the stack's roles against.
//!
//! Resources are ARN patterns over the stack's names: `${Partition}`, `${Region}`, `${Account}`,
//! and `${Name}` for a resource or parameter of `template.yaml` (its physical name or value).

use serde::Serialize;

/// Who makes the call with the function's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Caller {
    /// This crate, through the AWS SDK.
    Code,
    /// Lambda, for the function (its logs, its event source, its failure destination).
    Lambda,
    /// GitHub's audit-log stream, with the stream role.
    #[serde(rename = "github_stream")]
    GitHubStream,
    /// EventBridge Scheduler, with the schedule role.
    Scheduler,
    /// Whoever runs the CLI against the deployed stack, with their own AWS credentials.
    Operator,
}

impl Caller {
    /// The stack's role that makes the call.
    pub fn role(self) -> &'static str {
        match self {
            Caller::Code | Caller::Lambda => "function",
            Caller::GitHubStream => "stream",
            Caller::Scheduler => "schedule",
            Caller::Operator => "operator",
        }
    }
}

/// When the stack makes the call at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Always,
    /// Only with `PushMode=on`.
    Push,
    /// Only with at least one pull target.
    Pull,
}

#[derive(Debug, Serialize)]
pub struct AwsCall {
    pub service: &'static str,
    /// The API operation, as the service's API reference names it.
    pub operation: &'static str,
    /// What IAM checks for it (a transaction is authorized item by item).
    pub actions: &'static [&'static str],
    pub resource: &'static str,
    pub caller: Caller,
    pub mode: Mode,
    /// What the service asks KMS for, with the caller's permissions, when the resource is
    /// encrypted under `KmsKeyArn`; `kms:ViaService` is `<service>.<region>.amazonaws.com`.
    pub kms_actions: &'static [&'static str],
    pub why: &'static str,
}

impl AwsCall {
    /// Appended to an access-denied error: what the caller's role must allow.
    pub fn needs(&self) -> String {
        let kms = match self.kms_actions {
            [] => String::new(),
            actions => format!(", and {} on the resource's customer-managed key if it has one", actions.join(", ")),
        };
        match self.caller {
            Caller::Operator => format!("your AWS credentials need {} on it", self.actions.join(", ")),
            _ => format!(
                "the role needs {}{kms} (github-audit-sekoia permissions lists them all)",
                self.actions.join(", ")
            ),
        }
    }
}

const TABLE: &str = "arn:${Partition}:dynamodb:${Region}:${Account}:table/${CursorTable}";
/// Decrypting an item of a table under a customer-managed key (DynamoDB asks KMS with the
/// caller's permissions when its cached table key expires; writes encrypt with that key).
/// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/encryption.howitworks.html
const TABLE_KMS: &[&str] = &["kms:Decrypt", "kms:DescribeKey"];

pub const SECRETS_GET_SECRET_VALUE: AwsCall = AwsCall {
    service: "secretsmanager",
    operation: "GetSecretValue",
    actions: &["secretsmanager:GetSecretValue"],
    resource: "${SecretArn}|arn:${Partition}:secretsmanager:${Region}:${Account}:secret:${TargetSecretsPrefix}*",
    caller: Caller::Code,
    mode: Mode::Always,
    // Secrets Manager decrypts with the caller's permissions.
    // https://docs.aws.amazon.com/secretsmanager/latest/userguide/security-encryption.html
    kms_actions: &["kms:Decrypt"],
    why: "the GitHub credential and the intake key (SecretArn, and the targets' own secrets under TargetSecretsPrefix)",
};

pub const DYNAMODB_GET_ITEM: AwsCall = AwsCall {
    service: "dynamodb",
    operation: "GetItem",
    actions: &["dynamodb:GetItem"],
    resource: TABLE,
    caller: Caller::Code,
    mode: Mode::Always,
    kms_actions: TABLE_KMS,
    why: "a cursor read without taking it (a backfill's status); push mode: the record of a streamed file (how far it was forwarded)",
};

pub const DYNAMODB_BATCH_GET_ITEM: AwsCall = AwsCall {
    service: "dynamodb",
    operation: "BatchGetItem",
    actions: &["dynamodb:BatchGetItem"],
    resource: TABLE,
    caller: Caller::Code,
    mode: Mode::Always,
    kms_actions: TABLE_KMS,
    why: "the delivered record's items a read needs (duplicates recognised)",
};

pub const DYNAMODB_UPDATE_ITEM: AwsCall = AwsCall {
    service: "dynamodb",
    operation: "UpdateItem",
    actions: &["dynamodb:UpdateItem"],
    resource: TABLE,
    caller: Caller::Code,
    mode: Mode::Always,
    kms_actions: TABLE_KMS,
    why: "the cursor item: take and release its lease, save the checkpoint (version-conditional)",
};

pub const DYNAMODB_PUT_ITEM: AwsCall = AwsCall {
    service: "dynamodb",
    operation: "PutItem",
    actions: &["dynamodb:PutItem"],
    resource: TABLE,
    caller: Caller::Code,
    mode: Mode::Always,
    kms_actions: TABLE_KMS,
    why: "the delivered record's items, each unless a later holder of the lease wrote it",
};

pub const DYNAMODB_TRANSACT_WRITE_ITEMS: AwsCall = AwsCall {
    service: "dynamodb",
    operation: "TransactWriteItems",
    // Put, Delete and ConditionCheck items; each is authorized as its single-item action.
    // https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis-iam.html
    actions: &["dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem"],
    resource: TABLE,
    caller: Caller::Code,
    mode: Mode::Always,
    kms_actions: TABLE_KMS,
    why: "push mode's file records, and the minute items of a record kept by an earlier version deleted, only while the run holds the lease",
};

pub const S3_GET_OBJECT: AwsCall = AwsCall {
    service: "s3",
    operation: "GetObject",
    actions: &["s3:GetObject"],
    resource: "arn:${Partition}:s3:::${StreamBucket}/*",
    caller: Caller::Code,
    mode: Mode::Push,
    // https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html
    kms_actions: &["kms:Decrypt"],
    why: "push mode: the streamed files",
};

pub const S3_LIST_OBJECTS_V2: AwsCall = AwsCall {
    service: "s3",
    operation: "ListObjectsV2",
    actions: &["s3:ListBucket"],
    resource: "arn:${Partition}:s3:::${StreamBucket}",
    caller: Caller::Code,
    mode: Mode::Push,
    kms_actions: &[],
    why: "push mode: forward-s3 lists the stream's bucket (and a missing object answers 404 rather than 403)",
};

/// `backfill --on-lambda`: runs and status questions, with the operator's credentials (not a
/// call of the stack's roles, so not in [`AWS_CALLS`]).
pub const LAMBDA_INVOKE: AwsCall = AwsCall {
    service: "lambda",
    operation: "Invoke",
    actions: &["lambda:InvokeFunction"],
    resource: "arn:${Partition}:lambda:${Region}:${Account}:function:${ConnectorFunction}",
    caller: Caller::Operator,
    mode: Mode::Pull,
    kms_actions: &[],
    why: "backfill --on-lambda: start each run of a backfill, and ask where it stands",
};

/// The calls the CLI makes with the operator's own credentials.
pub const OPERATOR_CALLS: &[AwsCall] = &[LAMBDA_INVOKE];

/// The calls made with the stack's roles, by the code and by AWS for it.
pub const AWS_CALLS: &[AwsCall] = &[
    SECRETS_GET_SECRET_VALUE,
    DYNAMODB_GET_ITEM,
    DYNAMODB_BATCH_GET_ITEM,
    DYNAMODB_UPDATE_ITEM,
    DYNAMODB_PUT_ITEM,
    DYNAMODB_TRANSACT_WRITE_ITEMS,
    S3_GET_OBJECT,
    S3_LIST_OBJECTS_V2,
    AwsCall {
        service: "logs",
        operation: "CreateLogStream",
        actions: &["logs:CreateLogStream"],
        resource: "arn:${Partition}:logs:${Region}:${Account}:log-group:${ConnectorLogGroup}:*",
        caller: Caller::Lambda,
        mode: Mode::Always,
        // CloudWatch Logs uses the key with its own service principal (the key policy), not the caller's.
        kms_actions: &[],
        why: "Lambda: the function's log streams",
    },
    AwsCall {
        service: "logs",
        operation: "PutLogEvents",
        actions: &["logs:PutLogEvents"],
        resource: "arn:${Partition}:logs:${Region}:${Account}:log-group:${ConnectorLogGroup}:log-stream:*",
        caller: Caller::Lambda,
        mode: Mode::Always,
        kms_actions: &[],
        why: "Lambda: the function's logs and metrics (EMF lines)",
    },
    AwsCall {
        service: "sqs",
        operation: "SendMessage",
        actions: &["sqs:SendMessage"],
        resource: "arn:${Partition}:sqs:${Region}:${Account}:${FailedRunsQueue}",
        caller: Caller::Lambda,
        mode: Mode::Always,
        // https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-key-management.html
        kms_actions: &["kms:GenerateDataKey", "kms:Decrypt"],
        why: "Lambda: a failed invocation's request and error, to the failed-runs queue (on-failure destination)",
    },
    AwsCall {
        service: "sqs",
        operation: "ReceiveMessage",
        // What the event source mapping's poller needs.
        // https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html
        actions: &["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
        resource: "arn:${Partition}:sqs:${Region}:${Account}:${StreamQueue}",
        caller: Caller::Lambda,
        mode: Mode::Push,
        kms_actions: &["kms:Decrypt"],
        why: "Lambda: push mode's file notifications, polled, handed to the function and deleted once forwarded",
    },
    AwsCall {
        service: "s3",
        operation: "PutObject",
        actions: &["s3:PutObject"],
        resource: "arn:${Partition}:s3:::${StreamBucket}/*",
        caller: Caller::GitHubStream,
        mode: Mode::Push,
        // A multipart upload under a KMS key also needs kms:Decrypt: S3 reads the encrypted parts
        // to complete it. GitHub does not say how large its files grow, nor how it uploads them.
        // https://docs.aws.amazon.com/AmazonS3/latest/userguide/mpuoverview.html#mpuAndPermissions
        kms_actions: &["kms:GenerateDataKey", "kms:Decrypt"],
        why: "GitHub's stream writes the audit-log files (stream role, OIDC)",
    },
    AwsCall {
        service: "lambda",
        operation: "Invoke",
        actions: &["lambda:InvokeFunction"],
        resource: "arn:${Partition}:lambda:${Region}:${Account}:function:${ConnectorFunction}",
        caller: Caller::Scheduler,
        mode: Mode::Pull,
        kms_actions: &[],
        why: "each target's schedule invokes the function (schedule role)",
    },
];

/// The table as Markdown, one row per call and then one per service that uses `KmsKeyArn` for
/// a role: what the README's permission table shows.
pub fn markdown() -> String {
    let mut out = String::from("| Role | Actions | Resource | When | Why |\n| --- | --- | --- | --- | --- |\n");
    let mut kms_rows: Vec<(&str, &str, Vec<&str>)> = Vec::new();
    for call in AWS_CALLS {
        let role = call.caller.role();
        let when = match call.mode {
            Mode::Always => "always",
            Mode::Push => "push mode",
            Mode::Pull => "pull targets",
        };
        let resource = call.resource.replace('|', "` or `");
        out.push_str(&format!("| {role} | {} | `{resource}` | {when} | {} |\n", code_list(call.actions), call.why));
        match kms_rows.iter_mut().find(|(r, service, _)| *r == role && *service == call.service) {
            Some((_, _, actions)) => {
                for action in call.kms_actions {
                    if !actions.contains(action) {
                        actions.push(action);
                    }
                }
            }
            None if !call.kms_actions.is_empty() => kms_rows.push((role, call.service, call.kms_actions.to_vec())),
            None => {}
        }
    }
    for (role, service, actions) in kms_rows {
        out.push_str(&format!(
            "| {role} | {} | `${{KmsKeyArn}}` with `kms:ViaService` {service} | with KmsKeyArn | {service} uses the key with the caller's permissions |\n",
            code_list(&actions)
        ));
    }
    out
}

fn code_list(items: &[&str]) -> String {
    items.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `get_secret_value` → `GetSecretValue`, `list_objects_v2` → `ListObjectsV2`.
    fn operation_name(method: &str) -> String {
        method
            .split('_')
            .map(|word| {
                let mut chars = word.chars();
                chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
            })
            .collect()
    }

    /// Methods of the SDK clients that are not API operations.
    const NOT_OPERATIONS: &[&str] = &["clone", "config"];

    /// The SDK operations called in `src/`: `client.<operation>()`, across line breaks.
    fn sdk_operations_in_source() -> Vec<(String, String)> {
        let mut found = Vec::new();
        let mut dirs = vec![std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("src is readable") {
                let path = entry.expect("src entry").path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let text: String = std::fs::read_to_string(&path).expect("source").split_whitespace().collect();
                for (at, _) in text.match_indices("client.") {
                    let rest = &text[at + "client.".len()..];
                    let method: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                    let operation = !method.is_empty() && !NOT_OPERATIONS.contains(&method.as_str());
                    if operation && rest[method.len()..].starts_with("()") {
                        found.push((operation_name(&method), path.display().to_string()));
                    }
                }
            }
        }
        found
    }

    #[test]
    fn every_sdk_call_in_the_code_has_its_row_and_every_code_row_is_called() {
        let called = sdk_operations_in_source();
        for (operation, file) in &called {
            let listed = |c: &AwsCall| matches!(c.caller, Caller::Code | Caller::Operator) && c.operation == operation;
            assert!(
                AWS_CALLS.iter().chain(OPERATOR_CALLS).any(listed),
                "{file} calls {operation}, which src/aws_calls.rs does not list: add its row (and the template's permission)"
            );
        }
        for call in
            AWS_CALLS.iter().chain(OPERATOR_CALLS).filter(|c| matches!(c.caller, Caller::Code | Caller::Operator))
        {
            assert!(
                called.iter().any(|(operation, _)| operation == call.operation),
                "{} is listed as called by the code, but nothing in src/ calls it",
                call.operation
            );
        }
    }

    #[test]
    fn the_source_scan_finds_calls_across_line_breaks() {
        assert_eq!(operation_name("list_objects_v2"), "ListObjectsV2");
        let called: Vec<String> = sdk_operations_in_source().into_iter().map(|(op, _)| op).collect();
        for op in ["UpdateItem", "PutItem", "TransactWriteItems", "GetSecretValue", "GetObject"] {
            assert!(called.iter().any(|c| c == op), "{op} not found in {called:?}");
        }
    }

    #[test]
    fn the_readme_shows_this_table_and_a_key_policy_that_lets_cloudwatch_notify() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
        assert!(
            readme.contains(&markdown()),
            "README.md's permission table differs from `github-audit-sekoia permissions`: paste its output"
        );
        let policy = readme
            .split("```json\n")
            .map(|block| block.split("```").next().unwrap_or_default())
            .find(|block| block.contains("\"kms:*\""))
            .expect("README.md has a key-policy example");
        for principal in ["cloudwatch.amazonaws.com", "logs.<region>.amazonaws.com", "s3.amazonaws.com"] {
            assert!(policy.contains(principal), "the README's key policy leaves out {principal}");
        }
    }

    #[test]
    fn an_access_denied_hint_names_the_actions_and_the_key_permissions() {
        assert_eq!(
            DYNAMODB_TRANSACT_WRITE_ITEMS.needs(),
            "the role needs dynamodb:PutItem, dynamodb:DeleteItem, dynamodb:ConditionCheckItem, and \
             kms:Decrypt, kms:DescribeKey on the resource's customer-managed key if it has one \
             (github-audit-sekoia permissions lists them all)"
        );
    }
}
