"""A tool call answered and sent back, against the built-in provider emulator (no key needed).

    python examples/emulator_tool_loop.py

Against a real provider, drop the emulator, the key and the base URL: the rest is the same.
"""

from __future__ import annotations

import asyncio
import json

from rxstream import collect, sources
from rxstream import operators as rxs
from rxstream.testing import ProviderEmulator


async def main() -> None:
    async with ProviderEmulator() as emulator:
        messages: list[dict[str, object]] = [{"role": "user", "content": "What's the weather in Edinburgh?"}]
        stream = sources.openai_chat(
            model="gpt-4o-2024-08-06",
            messages=messages,
            api_key="emulator",
            base_url=f"{emulator.base_url}/v1",
            headers={"x-rxstream-recording": "openai-chat-toolcall-1"},
        ).pipe(rxs.normalize())
        result = await collect(stream)
        print("finish:", result.outputs[0].finish_reason)
        messages.append(result.assistant_message())  # the assistant turn, in the wire's own format
        for call in result.tool_calls:
            arguments = json.loads(call.arguments)
            answer = {"city": arguments["city"], "temperature_c": 11, "sky": "overcast"}
            messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(answer)})
            print(f"called {call.name}({arguments}) -> {answer}")
        print("next request's messages:")
        print(json.dumps(messages, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
