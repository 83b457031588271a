"""Summarizers: offline extractive, the model itself against the emulator, and BART through
transformers with a tiny model built here (no weights can be downloaded); and summarization inside
a Conversation keeping the system prompt and the recent turns."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from deepseek_kit import AsyncClient, UsageError
from deepseek_kit._conversation.context import SUMMARY_PREFIX, Summarize
from deepseek_kit._conversation.conversation import Conversation
from deepseek_kit._conversation.summarize import (
    BartSummarizer,
    ExtractiveSummarizer,
    ModelSummarizer,
    Summarizer,
    transcript,
)
from tests.helpers.dsk import chat_bodies

TALK = [
    {"role": "user", "content": "We are planning a trip to Lisbon in May. We travel by train from Madrid."},
    {"role": "assistant", "content": "The train from Madrid to Lisbon runs overnight. Lisbon in May is warm.",
     "reasoning_content": "secret scratch work"},
    {"role": "user", "content": "Which hotels are near the Lisbon train station? Budget is 120 euros."},
    {"role": "assistant", "content": "Several hotels near Santa Apolonia station cost about 100 euros. "
                                     "Book early for May."},
    {"role": "user", "content": "Thanks!"},
]


# -- extractive ------------------------------------------------------------------------------------


def test_extractive_picks_the_most_frequent_topic_sentences_in_order():
    s = ExtractiveSummarizer(max_chars=160)
    out = s.summarize(TALK)
    assert len(out) <= 160
    assert "Lisbon" in out  # the most frequent content word leads the choice
    assert "secret scratch work" not in out  # reasoning is not part of the conversation
    assert out.startswith(("User: ", "Assistant: "))  # speakers are kept
    assert s.summarize(TALK) == out  # deterministic
    # Original order: a sentence from the first message comes before one from a later message.
    if "Madrid" in out and "hotels" in out:
        assert out.index("Madrid") < out.index("hotels")
    # The previous summary takes part as text.
    folded = s.summarize(TALK[2:], previous="Trip to Lisbon by train from Madrid in May.")
    assert "Lisbon" in folded
    assert s.summarize([]) == ""
    assert s.summarize([], previous="kept") == "kept"
    assert isinstance(s, Summarizer)
    with pytest.raises(UsageError):
        ExtractiveSummarizer(max_chars=0)


def test_transcript_names_speakers_and_tool_calls_and_drops_reasoning():
    msgs = [
        *TALK[:2],
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "c",
                    "type": "function",
                    "function": {"name": "find_hotels", "arguments": '{"city":"Lisbon"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c", "content": "Hotel Mar, 95 euros"},
    ]
    text = transcript(msgs, previous="Earlier: greetings.")
    assert text.startswith("Earlier summary: Earlier: greetings.")
    assert "User: We are planning" in text and "Assistant: The train" in text
    assert 'Assistant: [called find_hotels({"city":"Lisbon"})]' in text
    assert "Tool result: Hotel Mar, 95 euros" in text
    assert "secret" not in text


# -- the model ---------------------------------------------------------------------------------------


async def test_model_summarizer_asks_the_model_without_thinking(emulator):
    seen = []
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as client:
        s = ModelSummarizer(client, model="deepseek-v4-pro", on_usage=lambda m, u: seen.append((m, u)))
        out = await s.summarize(TALK, previous="They talked about travel.")
    body = chat_bodies(emulator)[-1]
    assert body["model"] == "deepseek-v4-pro"
    assert body["thinking"] == {"type": "disabled"} and body["temperature"] == 0.3
    assert body["messages"][0]["role"] == "system" and "summaries" in body["messages"][0]["content"]
    user = body["messages"][1]["content"]
    assert "Earlier summary: They talked about travel." in user and "User: We are planning" in user
    assert out and out == out.strip()
    assert seen and seen[0][0] == "deepseek-v4-pro" and seen[0][1].prompt_tokens > 0


async def test_conversation_summarizes_with_its_own_model_and_keeps_system_and_recent_turns(emulator):
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as client:
        conv = Conversation(client, system="You are a travel agent.", thinking=False, max_tokens=40,
                            policy=Summarize(threshold_chars=600, keep_rounds=2))
        answers = []
        for i in range(8):
            r = await conv.send(f"Question {i}: tell me about day {i} of the Lisbon trip.")
            answers.append(r.choices[0].message.content)
    bodies = chat_bodies(emulator)
    summary_requests = [b for b in bodies if "Summarize this conversation" in b["messages"][-1]["content"]]
    chats = [b for b in bodies if b not in summary_requests]
    assert len(chats) == 8 and summary_requests
    assert all(
        b["model"] == "deepseek-flash" and b["thinking"] == {"type": "disabled"} for b in summary_requests
    )
    last = chats[-1]["messages"]
    # the system prompt stays first
    assert last[0] == {"role": "system", "content": "You are a travel agent."}
    assert last[1]["role"] == "system" and last[1]["content"].startswith(SUMMARY_PREFIX)
    # The recent turns are sent verbatim, the latest question last.
    users = [m["content"] for m in last if m["role"] == "user"]
    assert users[-1].startswith("Question 7:") and len(users) <= 4
    assert "Question 0:" not in " ".join(users)
    assert [m["content"] for m in last if m["role"] == "assistant"][-1] == answers[-2]
    # The history itself keeps everything; the tallies include the summary requests.
    assert len(conv) == 16
    assert conv.usage.requests == len(chats) + len(summary_requests)


# -- BART through transformers, with a tiny model built here -----------------------------------------


@pytest.fixture(scope="module")
def tiny_bart():
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import BartConfig, BartForConditionalGeneration, PreTrainedTokenizerFast

    corpus = [transcript(TALK), "summary of the trip to lisbon by train", "hotels near the station in may"]
    tk = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.train_from_iterator(
        corpus, trainers.WordLevelTrainer(special_tokens=["<s>", "<pad>", "</s>", "<unk>"])
    )
    tk.post_processor = processors.TemplateProcessing(single="<s> $A </s>",
                                                      special_tokens=[("<s>", 0), ("</s>", 2)])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>",
                                  pad_token="<pad>", unk_token="<unk>")
    torch.manual_seed(0)
    config = BartConfig(vocab_size=len(tok), d_model=16, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                        decoder_ffn_dim=32, max_position_embeddings=256, pad_token_id=1, bos_token_id=0,
                        eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=2)
    model = BartForConditionalGeneration(config)
    return tok, model


def test_bart_summarizer_runs_generate_on_a_tiny_model(tiny_bart):
    tok, model = tiny_bart
    s = BartSummarizer(tokenizer=tok, model=model, max_input_tokens=64, max_summary_tokens=8,
                       min_summary_tokens=3, num_beams=2)
    out = s.summarize(TALK)
    assert isinstance(out, str) and out
    vocab = set(tok.get_vocab())
    assert all(w in vocab for w in out.split())  # decoded from the model's own vocabulary
    assert s.summarize(TALK) == out  # eval mode, beam search: deterministic
    assert s.blocking and not model.training


async def test_conversation_summarizes_with_bart(emulator, tiny_bart):
    tok, model = tiny_bart
    bart = BartSummarizer(tokenizer=tok, model=model, max_input_tokens=128, max_summary_tokens=8,
                          min_summary_tokens=3, num_beams=1)
    async with AsyncClient(api_key="sk-test", base_url=emulator.base_url) as client:
        conv = Conversation(client, system="Travel agent.", thinking=False, max_tokens=30,
                            policy=Summarize(threshold_chars=300, keep_rounds=1, summarizer=bart))
        for i in range(4):
            await conv.send(f"Question {i} about the Lisbon trip by train in May.")
        sent = conv.messages()
    last = chat_bodies(emulator)[-1]["messages"]
    assert last[0]["content"] == "Travel agent."
    assert last[1]["content"].startswith(SUMMARY_PREFIX)
    summary = last[1]["content"][len(SUMMARY_PREFIX):]
    assert summary and all(w in tok.get_vocab() for w in summary.split())
    assert last[-1]["content"].startswith("Question 3")
    assert sent[1] == last[1]  # messages() shows the same summary that was sent
    assert conv.usage.requests == 4  # BART runs locally: no extra requests


def test_bart_without_transformers_names_the_extra():
    code = textwrap.dedent("""
        import sys
        sys.modules["transformers"] = None
        from deepseek_kit._conversation.summarize import BartSummarizer
        from deepseek_kit import UsageError
        try:
            BartSummarizer()
        except UsageError as e:
            print("ERR", e)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "ERR BartSummarizer needs the optional packages transformers and torch" in out
    assert "pip install 'deepseek-kit[bart]'" in out
