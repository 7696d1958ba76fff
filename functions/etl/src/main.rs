//! ETL Lambda: config, clients, run.

use dataflow_aws::requeue::SqsRequeue;
use dataflow_core::checkpoint::Completion;
use dataflow_core::config::EtlConfig;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (cfg, aws) = dataflow_aws::start::<EtlConfig>().await?;
    let etl = dataflow_aws::etl(&cfg, &aws);
    let requeue = SqsRequeue::new(aws.sqs());
    // One Embedded Metric Format document per counted object, on stdout: CloudWatch makes the
    // metrics from the log stream, with no API call in the ETL's path.
    let namespace = cfg.metrics_namespace.clone();
    let emit = move |c: &Completion| {
        let now = dataflow_core::time::now_ms();
        println!(
            "{}",
            dataflow_core::etl::metrics::object_processed(&namespace, c, now)
        );
    };
    let (etl, requeue, emit) = (&etl, &requeue, &emit);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        etl_function::handle_with_metrics(etl, requeue, emit, event.payload)
            .await
            .map_err(Error::from)
    }))
    .await
}
