// saliency: not written yet
