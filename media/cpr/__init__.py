"""CPR quality figures beside the checklist: from the station's video (`motion`), from a feedback
manikin's export (`manikin`), and as short strings per checklist item (`figures`)."""
