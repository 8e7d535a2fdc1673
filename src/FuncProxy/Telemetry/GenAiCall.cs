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
    /// provider from the path or the upstream's host (<c>anthropic</c> for <c>messages</c> or an anthropic.com host,
    /// <c>azure.ai.openai</c> for <c>openai/deployments/</c> paths or an *.openai.azure.com host, else <c>openai</c>).
    /// </summary>
    public static GenAiCall? For(string? model, string? path, Uri upstreamBaseUrl, Activity? activity)
    {
        ArgumentNullException.ThrowIfNull(upstreamBaseUrl);
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
        var host = upstreamBaseUrl.Host;
        var provider =
            p.EndsWith("messages", StringComparison.OrdinalIgnoreCase) && !p.Contains("threads", StringComparison.OrdinalIgnoreCase)
                || host.EndsWith("anthropic.com", StringComparison.OrdinalIgnoreCase) ? "anthropic"
            : p.StartsWith("openai/deployments/", StringComparison.OrdinalIgnoreCase) || host.EndsWith(".openai.azure.com", StringComparison.OrdinalIgnoreCase) ? "azure.ai.openai"
            : "openai";
        activity?.SetTag("gen_ai.operation.name", operation);
        activity?.SetTag("gen_ai.provider.name", provider);
        activity?.SetTag("gen_ai.request.model", model);
        return new GenAiCall(operation, provider, model, activity);
    }
}
