"""Speech, voice effects, ambience and mixing (cpu_intensive)."""
