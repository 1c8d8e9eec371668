"""The MongoDB store: `MongoStore` (store.py) composing one module per concern over one client
(connection.py); collections by name in collections.py."""

from agent.store.mongo.collections import CollectionNames
from agent.store.mongo.connection import split_credentials
from agent.store.mongo.store import MongoStore

__all__ = ["CollectionNames", "MongoStore", "split_credentials"]
