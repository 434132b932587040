"""Simulation helpers for ``amaranth.lib.stream`` interfaces, written once for every testbench.

``await stream_put(ctx, stream, payload)`` drives one beat and returns when it was accepted;
``await stream_get(ctx, stream)`` waits for a beat, accepts it and returns its payload (as the
simulator's value: a View for layouts, an int otherwise).
"""

__all__ = ["stream_put", "stream_get"]


async def stream_put(ctx, stream, payload):
    ctx.set(stream.valid, 1)
    ctx.set(stream.payload, payload)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream):
    ctx.set(stream.ready, 1)
    payload, = await ctx.tick().sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload
