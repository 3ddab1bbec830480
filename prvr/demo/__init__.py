"""The embedded demo: the generated multi-event video corpus (vocabulary, renderer, captions) and the
still-caption pairs that pretrain its tiny CLIP."""
