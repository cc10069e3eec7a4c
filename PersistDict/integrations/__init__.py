"""Adapters to LLM frameworks: ``PersistDict.integrations.langchain`` and
``PersistDict.integrations.llama_index``. Each imports its framework when it is imported itself,
never before: ``import PersistDict`` imports neither (the extras ``PersistDict[langchain]`` and
``PersistDict[llama-index]`` install them)."""
