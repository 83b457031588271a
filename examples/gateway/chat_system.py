import asyncio
import json
import sys

import websockets


class ChatSystem:
    def __init__(self, url, token):
        self.url = url
        self.token = token

    async def chat(self, message):
        async with websockets.connect(self.url, additional_headers={"Authorization": f"Bearer {self.token}"}) as ws:
            await ws.send(json.dumps({
                "model": "deepseek-chat",
                "messages": [{"role": "user", "content": message}],
                "stream": True,
            }))
            async for message in ws:
                data = json.loads(message)
                print(data["choices"][0]["delta"]["content"])


asyncio.run(ChatSystem("ws://127.0.0.1:18080/v1/chat/stream", sys.argv[1]).chat("Hello!"))
