"""Search one's own videos with a trained model: index a folder of videos, put a text query to it,
get the ranked videos with their best moment (issue 22).

    from prvr.search import index_videos, search
    index_videos("my_videos/", "model.pt", "my_index", clip_weights="tiny_clip.pt")
    for hit in search("my_index", "a red circle spins", k=5):
        print(hit.rank, hit.video, hit.score, hit.start, hit.end)

Modules: inputs (which files), encoding (model + CLIP as the pipeline uses them), store (the index
folder), indexer (index_videos), windows (long videos as overlapping windows), searcher (search,
Searcher), fast_scores (exact top k over float16 tokens), moments (the moment rule and its agreement
with ground truth), measure (that agreement on an annotated split), page (the hits as an HTML page:
write_results_page).
"""
from prvr.search.indexer import index_videos
from prvr.search.page import write_results_page
from prvr.search.searcher import Hit, Searcher, search

__all__ = ["Hit", "Searcher", "index_videos", "search", "write_results_page"]
