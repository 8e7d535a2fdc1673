using FuncProxy.Proxying;

namespace FuncProxy.RateLimiting;

/// <summary>
/// The tokens a call is expected to use, reserved on admission: input from the body size
/// (<see cref="LimitOptions.BytesPerToken"/> bytes a token), output from the body's <c>max_tokens</c>,
/// <c>max_completion_tokens</c> or <c>max_output_tokens</c> (times <c>n</c>), else <see cref="LimitOptions.DefaultOutputTokens"/>.
/// The fields come from the read-ahead (<see cref="CallBody"/>). The settlement corrects the estimate with the reported usage.
/// </summary>
internal static class TokenEstimate
{
    /// <summary>Expected input tokens: the body size over <see cref="LimitOptions.BytesPerToken"/>, rounded up.</summary>
    public static long Input(CallBody body, LimitOptions options) =>
        body.HasBody ? (body.Bytes + options.BytesPerToken - 1) / options.BytesPerToken : 0;

    /// <summary>Most output tokens the call can produce: its output limit (or the default) times <c>n</c>.</summary>
    public static long MaxOutput(CallBody body, LimitOptions options) =>
        body.HasBody ? (body.MaxOutputTokens ?? options.DefaultOutputTokens) * Math.Max(body.Choices, 1) : 0;

    public static long For(CallBody body, LimitOptions options)
    {
        ArgumentNullException.ThrowIfNull(body);
        ArgumentNullException.ThrowIfNull(options);
        return Input(body, options) + MaxOutput(body, options);
    }
}
