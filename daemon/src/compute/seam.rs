//! The compute part's side of [`LocalFunctions`]: the market runs jobs through it.

use futures::StreamExt;

use super::{Chunk, Compute, InvokeRequest, MAX_PAGE_SIZE};
use crate::seams::functions::{
    FunctionCall, LocalFunctions, OfferedFunction, OutputPart, OutputStream,
};

impl LocalFunctions for Compute {
    fn offered(&self) -> Vec<OfferedFunction> {
        let mut offered = Vec::new();
        let mut token = String::new();
        while let Ok(page) = self.list_functions(&token, MAX_PAGE_SIZE) {
            offered.extend(page.functions.into_iter().map(|f| OfferedFunction {
                function_id: f.function_id,
                kind: f.kind,
                description: f.description,
                price: f.price,
                max_concurrency: f.max_concurrency,
                max_input_bytes: f.max_input_bytes,
                module_id: f.module_id.map(|module| *module.as_bytes()),
            }));
            match page.next_page_token {
                Some(next) => token = next,
                None => break,
            }
        }
        offered
    }

    fn load(&self) -> u8 {
        let Ok(page) = self.list_functions("", MAX_PAGE_SIZE) else {
            return 0;
        };
        let (busy, capacity) = page.functions.iter().fold((0u64, 0u64), |(b, c), f| {
            (
                b + u64::from(f.in_flight) + u64::from(f.queued),
                c + u64::from(f.max_concurrency),
            )
        });
        (busy * 255)
            .checked_div(capacity)
            .map_or(0, |load| u8::try_from(load.min(255)).unwrap_or(u8::MAX))
    }

    fn start(&self, call: FunctionCall) -> Result<OutputStream, String> {
        let request = InvokeRequest {
            deadline: call.deadline,
            ..InvokeRequest::new(call.function_id, call.input)
        };
        let invocation = self.start_invocation(request).map_err(|e| e.to_string())?;
        let parts = futures::stream::unfold(invocation, |mut invocation| async move {
            let part =
                invocation
                    .next()
                    .await?
                    .map_err(|e| e.to_string())
                    .map(|chunk| match chunk {
                        Chunk::Partial(bytes) => OutputPart::Partial(bytes),
                        Chunk::Final { output, metering } => OutputPart::Final {
                            output,
                            fuel_used: metering.fuel_used,
                        },
                    });
            Some((part, invocation))
        });
        Ok(parts.boxed())
    }
}
