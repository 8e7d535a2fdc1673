using System.Diagnostics;

namespace FuncProxy.Telemetry;

/// <summary>
/// What the OpenTelemetry GenAI semantic conventions (semantic-conventions v1.41.0, GenAI client metrics and spans,
/// status Development) need to know of one proxied model call: <c>gen_ai.operation.name</c>, <c>gen_ai.provider.name</c>
/// and <c>gen_ai.request.model</c>. Null from <see cref="For"/> when the call is not a model call (no model named).
/// </summary>
internal sealed record GenAiCall(string Operation, string Provider, string RequestModel, Activity? Activity)
{
    /// <summary>
    /// The operation from the path (<c>chat/completions</c>, <c>responses</c> and <c>messages</c>: <c>chat</c>;
    /// <c>embeddings</c>; <c>completions</c>: <c>text_completion</c>; anything else: <c>generate_content</c>) and the
    /// provider: the upstream's <c>Provider</c> (configured, or inferred from its backends' hosts), else from the path
    /// (<c>anthropic</c> for <c>messages</c>, <c>azure.ai.openai</c> for <c>openai/deployments/</c> paths, else <c>openai</c>).
    /// </summary>
    public static GenAiCall? For(string? model, string? path, string? upstreamProvider, Activity? activity)
    {
        if (model is null)
        {
            return null;
        }
        var p = (path ?? "").TrimEnd('/');
        var operation =
            p.EndsWith("chat/completions", StringComparison.OrdinalIgnoreCase) || p.EndsWith("responses", StringComparison.OrdinalIgnoreCase)
                || p.EndsWith("messages", StringComparison.OrdinalIgnoreCase) ? "chat"
            : p.EndsWith("embeddings", StringComparison.OrdinalIgnoreCase) ? "embeddings"
            : p.EndsWith("completions", StringComparison.OrdinalIgnoreCase) ? "text_completion"
            : "generate_content";
        var provider = upstreamProvider
            ?? (p.EndsWith("messages", StringComparison.OrdinalIgnoreCase) && !p.Contains("threads", StringComparison.OrdinalIgnoreCase) ? "anthropic"
            : p.StartsWith("openai/deployments/", StringComparison.OrdinalIgnoreCase) ? "azure.ai.openai"
            : "openai");
        activity?.SetTag("gen_ai.operation.name", operation);
        activity?.SetTag("gen_ai.provider.name", provider);
        activity?.SetTag("gen_ai.request.model", model);
        return new GenAiCall(operation, provider, model, activity);
    }
}
