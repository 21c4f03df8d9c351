"""Image: text-to-image over VQ tokens with Hawk spatial draft heads (scenes and their checker so far)."""
